package main

import (
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	natsserver "github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/secureagentmessaging/samgw/internal/testutil"
)

// TestServeCluster runs three `samgw serve --nats` nodes against one NATS,
// spreads scenario clients over them with a comma-separated --addr, and
// checks that their connection ids name their nodes and that they count in
// one shared store.
func TestServeCluster(t *testing.T) {
	ns, err := natsserver.NewServer(&natsserver.Options{Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: t.TempDir(), NoSigs: true, NoLog: true})
	if err != nil {
		t.Fatal(err)
	}
	go ns.Start()
	if !ns.ReadyForConnections(testutil.WaitTimeout) {
		t.Fatal("NATS did not start")
	}
	defer func() {
		ns.Shutdown()
		ns.WaitForShutdown()
	}()
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "default.lua"), `
function on_data(msg, conn)
  if msg.payload == "count" then return store.incr("hits") end
  if msg.payload == "where" then return conn.id end
  return gateway.broadcast(msg.payload, "all", conn.id)
end`)
	var addrs []string
	for _, node := range []string{"alpha", "beta", "gamma"} {
		addr, log, _ := startServe(t, "--scripts", dir, "--nats", ns.ClientURL(), "--node", node, "--metrics-listen", "127.0.0.1:0", "--presence-ttl", "6s")
		if !strings.Contains(log.String(), `msg="Joined the cluster" node=`+node) {
			t.Fatalf("log: %s", log.String())
		}
		addrs = append(addrs, addr)
		if got := sendOK(t, addr, `"where"`); !regexp.MustCompile(`^"` + node + `\.[a-z2-7]{6}\.c\d+"$`).MatchString(got) {
			t.Fatalf("connection id %s is not NODE.BOOT.cN for node %s", got, node)
		}
	}
	scenario := filepath.Join(dir, "spread.lua")
	writeFile(t, scenario, `
for i = 1, 5 do request("count") end
`)
	code, out, errOut := runSamgw(t, "", "client", "--addr", strings.Join(addrs, ","), "--clients", "9", "--scenario", scenario)
	if code != 0 || !strings.Contains(out, "9 clients: 9 passed, 0 failed") {
		t.Fatalf("exit %d\n%s\n%s", code, out, errOut)
	}
	// 45 increments through three nodes, one shared store.
	if got := sendOK(t, addrs[1], `"count"`); got != "46" {
		t.Fatalf("shared count %s, want 46", got)
	}
	// --presence-ttl reached the presence bucket.
	nc, err := nats.Connect(ns.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	kv, err := js.KeyValue(t.Context(), "samgw_presence")
	if err != nil {
		t.Fatal(err)
	}
	st, err := kv.Status(t.Context())
	if err != nil || st.TTL() != 6*time.Second {
		t.Fatalf("presence bucket TTL %v, %v; want 6s", st, err)
	}
}
