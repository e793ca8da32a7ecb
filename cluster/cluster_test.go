package cluster

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	natsserver "github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"go.uber.org/goleak"

	"github.com/secureagentmessaging/samgw/gateway"
	"github.com/secureagentmessaging/samgw/internal/gatewaytest"
	"github.com/secureagentmessaging/samgw/internal/testutil"
	"github.com/secureagentmessaging/samgw/protocol"
	"github.com/secureagentmessaging/samgw/scripting"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		// nats-server keeps a few process-wide goroutines after Shutdown.
		goleak.IgnoreTopFunction("github.com/nats-io/nats-server/v2/server.(*Server).handleSignals.func1"),
		goleak.IgnoreAnyFunction("github.com/nats-io/nats-server/v2/server.(*Server).startGoRoutine"),
		goleak.IgnoreAnyFunction("github.com/nats-io/nats-server/v2/server.init.0.func1"),
	)
}

// natsServer runs an in-process NATS with JetStream on port (0: any), with
// its store in dir.
func natsServer(t testing.TB, port int, dir string) *natsserver.Server {
	t.Helper()
	ns, err := natsserver.NewServer(&natsserver.Options{Host: "127.0.0.1", Port: port, JetStream: true, StoreDir: dir, NoSigs: true, NoLog: true})
	if err != nil {
		t.Fatal(err)
	}
	go ns.Start()
	if !ns.ReadyForConnections(testutil.WaitTimeout) {
		t.Fatal("NATS did not start")
	}
	return ns
}

const handler = `
function on_data(msg, conn)
  local p = msg.payload
  if p.op == "id" then return conn.id end
  if p.op == "send" then return gateway.send(p.to, p.body, "direct") end
  if p.op == "send_to" then return gateway.send_to(p.identity, p.body, "ident") end
  if p.op == "broadcast" then return gateway.broadcast(p.body, "all", conn.id) end
  if p.op == "connections" then return gateway.connections(p.scope) end
  if p.op == "incr" then return store.incr("count") end
  if p.op == "set" then store.set(p.key, p.value, p.opts) return true end
  if p.op == "cas" then return store.cas(p.key, p.old, p.new) end
  if p.op == "get" then return store.get(p.key) end
  if p.op == "getv" then return {v = store.get(p.key)} end
  if p.op == "publish" then nats.publish(p.subject, p.body) return true end
  if p.op == "request" then return {reply = nats.request(p.subject, p.body, 1000)} end
  if p.op == "subscribe" then return gateway.subscribe(conn.id, p.topic) end
  if p.op == "unsubscribe" then return gateway.unsubscribe(conn.id, p.topic) end
  if p.op == "publish_topic" then return gateway.publish(p.topic, p.body, "topic") end
  return p
end`

func hash(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:])
}

// node is one samgw node of the test cluster.
type node struct {
	name    string
	cluster *Cluster
	engine  *scripting.Engine
	srv     *gateway.Server
	addr    string
}

func startNode(t testing.TB, name, natsURL, scripts string) *node {
	t.Helper()
	quiet := slog.New(slog.DiscardHandler)
	c, err := Connect(context.Background(), Config{URLs: natsURL, Node: name, PresenceTTL: 1500 * time.Millisecond,
		SubjectAllow: []string{"app."}, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	e, err := scripting.New(scripting.Config{Dir: scripts, Logger: quiet, Cluster: c, KV: c.Store(), Timeout: 3 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	srv, addr := gatewaytest.Serve(t, "", gateway.Config{Handler: e, IDPrefix: c.IDPrefix(), MaxConns: 20000, Auth: &gateway.AuthConfig{Identities: []gateway.Identity{
		{Name: "agent-a", TokenSHA256: hash("a")}, {Name: "agent-b", TokenSHA256: hash("b")}, {Name: "agent-c", TokenSHA256: hash("c")},
	}}})
	c.OnNodeDown(e.NodeDown)
	if err := c.Start(srv); err != nil {
		t.Fatal(err)
	}
	n := &node{name: name, cluster: c, engine: e, srv: srv, addr: addr}
	t.Cleanup(func() {
		e.Close()
		c.Close()
	})
	return n
}

// callsFromEach has every agent make n calls at once (the j-th call of
// agent i sends frame(i, j)) and returns every answer; a call that failed
// answers with its error, prefixed "error". Failures come back as values:
// t.Fatal belongs to the test's goroutine.
func callsFromEach(agents []*agent, n int, frame func(i, j int) string) []string {
	var wg sync.WaitGroup
	answers := make(chan string, len(agents)*n)
	for i, ag := range agents {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range n {
				got, err := tryCall(ag, frame(i, j))
				if err != nil {
					got = "error: " + err.Error()
				}
				answers <- got
			}
		}()
	}
	wg.Wait()
	close(answers)
	var all []string
	for a := range answers {
		all = append(all, a)
	}
	return all
}

// agent is a client of one node that collects pushes.
type agent struct {
	c      *gateway.Client
	pushes chan *protocol.Message
	id     string
}

func connectAgent(t testing.TB, n *node, token string) *agent {
	t.Helper()
	a := &agent{pushes: make(chan *protocol.Message, 64)}
	var err error
	a.c, err = gateway.NewClient(gateway.ClientConfig{Addr: n.addr, Token: token, Logger: slog.New(slog.DiscardHandler),
		BackoffMin: 20 * time.Millisecond, BackoffMax: 100 * time.Millisecond,
		OnMessage: func(m *protocol.Message) {
			if m.Type == protocol.TypeData && strings.HasPrefix(m.ID, "s-") {
				a.pushes <- m.Clone()
			}
		}})
	if err != nil {
		t.Fatal(err)
	}
	if err := a.c.Connect(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.c.Disconnect("done") })
	var id string
	json.Unmarshal([]byte(call(t, a, `{"op":"id"}`)), &id)
	a.id = id
	return a
}

// call sends a request and returns the reply payload, or "error: <code>";
// it must run on the test's goroutine.
func call(t testing.TB, a *agent, payload string) string {
	t.Helper()
	got, err := tryCall(a, payload)
	if err != nil {
		t.Fatal(err)
	}
	return got
}

// tryCall is call for any goroutine: a failure to get an answer is
// returned, not reported.
func tryCall(a *agent, payload string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), testutil.WaitTimeout)
	defer cancel()
	reply, err := a.c.Request(ctx, json.RawMessage(payload))
	var pe *protocol.Error
	if errors.As(err, &pe) {
		return "error: " + string(pe.Code), nil
	}
	if err != nil {
		return "", fmt.Errorf("request %s: %w", payload, err)
	}
	return string(reply.Payload), nil
}

func expectPush(t *testing.T, a *agent, route, payload string) {
	t.Helper()
	select {
	case m := <-a.pushes:
		if m.Route != route || string(m.Payload) != payload {
			t.Fatalf("push %s on %q, want %s on %q", m.Payload, m.Route, payload, route)
		}
	case <-time.After(testutil.WaitTimeout):
		t.Fatalf("no push %s", payload)
	}
}

// TestThreeNodes runs three nodes on one NATS and walks through what a
// cluster promises, one subtest per promise over the same fixture, so the
// first failure does not hide the rest.
func TestThreeNodes(t *testing.T) {
	natsDir := t.TempDir()
	ns := natsServer(t, -1, natsDir)
	url := ns.ClientURL()
	natsPort := ns.Addr().(*net.TCPAddr).Port
	scripts := t.TempDir()
	if err := os.WriteFile(filepath.Join(scripts, "default.lua"), []byte(handler), 0o644); err != nil {
		t.Fatal(err)
	}
	n1, n2, n3 := startNode(t, "n1", url, scripts), startNode(t, "n2", url, scripts), startNode(t, "n3", url, scripts)
	a := connectAgent(t, n1, "a")
	b := connectAgent(t, n2, "b")
	b2 := connectAgent(t, n3, "b")
	c := connectAgent(t, n3, "c")
	if !strings.HasPrefix(a.id, "n1.") || !strings.HasPrefix(b.id, "n2.") || !strings.HasPrefix(c.id, "n3.") {
		t.Fatalf("connection ids %s %s %s do not name their nodes", a.id, b.id, c.id)
	}

	t.Run("cross-node send", func(t *testing.T) {
		if got := call(t, a, fmt.Sprintf(`{"op":"send","to":%q,"body":{"hi":"b"}}`, b.id)); got != "true" {
			t.Fatalf("cross-node send: %s", got)
		}
		expectPush(t, b, "direct", `{"hi":"b"}`)
		if got := call(t, a, `{"op":"send","to":"n2.c999","body":1}`); got != "false" {
			t.Fatalf("send to a missing connection: %s", got)
		}
		if got := call(t, a, `{"op":"send","to":"n9.c1","body":1}`); got != "false" {
			t.Fatalf("send to a missing node: %s", got)
		}
	})
	t.Run("broadcast reaches every node", func(t *testing.T) {
		if got := call(t, a, `{"op":"broadcast","body":"to all"}`); got != "3" {
			t.Fatalf("broadcast count %s, want 3 (b, b2, c)", got)
		}
		for _, ag := range []*agent{b, b2, c} {
			expectPush(t, ag, "all", `"to all"`)
		}
	})
	t.Run("topics reach their subscribers on every node", func(t *testing.T) {
		for _, sub := range []struct {
			ag    *agent
			topic string
		}{{b, "room.1"}, {c, "room.1"}, {b2, "room.2"}} {
			if got := call(t, sub.ag, `{"op":"subscribe","topic":"`+sub.topic+`"}`); got != "true" {
				t.Fatalf("subscribe: %s", got)
			}
		}
		if got := call(t, a, `{"op":"publish_topic","topic":"room.1","body":{"n":1}}`); got != "2" {
			t.Fatalf("publish reached %s, want 2 (b on n2, c on n3)", got)
		}
		expectPush(t, b, "topic", `{"n":1}`)
		expectPush(t, c, "topic", `{"n":1}`)
		if got := call(t, c, `{"op":"unsubscribe","topic":"room.1"}`); got != "true" {
			t.Fatalf("unsubscribe: %s", got)
		}
		if got := call(t, b2, `{"op":"publish_topic","topic":"room.1","body":{"n":2}}`); got != "1" {
			t.Fatalf("publish after an unsubscribe reached %s, want 1", got)
		}
		expectPush(t, b, "topic", `{"n":2}`)
		if got := call(t, a, `{"op":"publish_topic","topic":"room.2","body":3}`); got != "1" {
			t.Fatalf("publish to room.2 reached %s, want 1", got)
		}
		expectPush(t, b2, "topic", `3`)
		// No strays: c (unsubscribed) and a (never subscribed) got nothing.
		for _, ag := range []*agent{a, c} {
			select {
			case m := <-ag.pushes:
				t.Fatalf("unexpected push %s on %q", m.Payload, m.Route)
			default:
			}
		}
	})
	t.Run("presence of connections and identities", func(t *testing.T) {
		testutil.Eventually(t, "presence of all four connections", func() bool {
			var ids []string
			json.Unmarshal([]byte(call(t, a, `{"op":"connections","scope":"cluster"}`)), &ids)
			return len(ids) == 4
		})
		if got := call(t, a, `{"op":"connections"}`); got != fmt.Sprintf("[%q]", a.id) {
			t.Fatalf("local connections: %s", got)
		}
		// A connection and its identity are one presence entry, so the four
		// connections being there means both of agent-b's are found by
		// identity too; waiting on what send_to reads costs nothing more.
		testutil.Eventually(t, "both connections of agent-b in presence", func() bool {
			keys, err := n1.cluster.presenceKeys(context.Background(), "conn."+encodeKey("agent-b")+".>")
			return err == nil && len(keys) == 2
		})
		// Known from presence now: cross-node sends go out without a round trip.
		published, asked := n1.cluster.published.Load(), n1.cluster.asked.Load()
		if got := call(t, a, fmt.Sprintf(`{"op":"send","to":%q,"body":"fast"}`, b.id)); got != "true" {
			t.Fatalf("send to a connection in presence: %s", got)
		}
		expectPush(t, b, "direct", `"fast"`)
		if n1.cluster.published.Load() != published+1 || n1.cluster.asked.Load() != asked {
			t.Fatalf("the send to a known connection was not a plain publish (published %d→%d, asked %d→%d)",
				published, n1.cluster.published.Load(), asked, n1.cluster.asked.Load())
		}
		if got := call(t, a, `{"op":"send_to","identity":"agent-b","body":"for b"}`); got != "2" {
			t.Fatalf("send_to agent-b reached %s, want 2", got)
		}
		expectPush(t, b, "ident", `"for b"`)
		expectPush(t, b2, "ident", `"for b"`)
	})
	t.Run("one store, concurrent increments from every node", func(t *testing.T) {
		for _, got := range callsFromEach([]*agent{a, b, c}, 20, func(int, int) string { return `{"op":"incr"}` }) {
			if strings.HasPrefix(got, "error") {
				t.Errorf("incr: %s", got)
			}
		}
		if got := call(t, b2, `{"op":"get","key":"count"}`); got != "60" {
			t.Fatalf("count after 60 concurrent increments on three nodes: %s", got)
		}
		call(t, a, `{"op":"set","key":"odd key: ✓/*>","value":{"x":[1]}}`)
		if got := call(t, c, `{"op":"get","key":"odd key: ✓/*>"}`); got != `{"x":[1]}` {
			t.Fatalf("store across nodes: %s", got)
		}
	})
	t.Run("store cas is one step across nodes, ttl expires everywhere", func(t *testing.T) {
		wins := callsFromEach([]*agent{a, b, c}, 10, func(i, j int) string {
			return fmt.Sprintf(`{"op":"cas","key":"leader","new":"n%d-%d"}`, i, j)
		})
		won := 0
		for _, w := range wins {
			switch w {
			case "true":
				won++
			case "false":
			default:
				t.Errorf("cas: %s", w)
			}
		}
		if won != 1 {
			t.Fatalf("%d of 30 concurrent creates of one key won, want exactly 1", won)
		}
		call(t, a, `{"op":"set","key":"session","value":"s1","opts":{"ttl_ms":300}}`)
		if got := call(t, c, `{"op":"get","key":"session"}`); got != `"s1"` {
			t.Fatalf("a ttl value on another node: %s", got)
		}
		testutil.Eventually(t, "the value to expire on every node", func() bool {
			return call(t, b, `{"op":"getv","key":"session"}`) == "{}" && call(t, c, `{"op":"getv","key":"session"}`) == "{}"
		})
		if got := call(t, c, `{"op":"cas","key":"session","new":"s2"}`); got != "true" {
			t.Fatalf("creating over an expired value: %s", got)
		}
	})
	t.Run("NATS subjects for scripts, allowed prefixes only", func(t *testing.T) {
		nc, err := nats.Connect(url)
		if err != nil {
			t.Fatal(err)
		}
		defer nc.Close()
		events, _ := nc.SubscribeSync("app.events")
		svc, _ := nc.Subscribe("app.svc", func(m *nats.Msg) { m.Respond([]byte(`{"served":true}`)) })
		defer svc.Unsubscribe()
		nc.Flush()
		call(t, a, `{"op":"publish","subject":"app.events","body":{"e":1}}`)
		if m, err := events.NextMsg(testutil.WaitTimeout); err != nil || string(m.Data) != `{"e":1}` {
			t.Fatalf("published %v %v", m, err)
		}
		if got := call(t, a, `{"op":"request","subject":"app.svc","body":1}`); got != `{"reply":{"served":true}}` {
			t.Fatalf("request: %s", got)
		}
		if got := call(t, a, `{"op":"publish","subject":"samgw.broadcast","body":1}`); got != "error: handler_error" {
			t.Fatalf("publish outside the allowed prefixes: %s", got)
		}
	})
	t.Run("a dead node's presence expires, the others go on", func(t *testing.T) {
		n3.cluster.stopRefresh()
		n3.cluster.nc.Close()
		testutil.Eventually(t, "n3's presence to expire", func() bool {
			var ids []string
			json.Unmarshal([]byte(call(t, a, `{"op":"connections","scope":"cluster"}`)), &ids)
			for _, id := range ids {
				if strings.HasPrefix(id, "n3.") {
					return false
				}
			}
			return len(ids) == 2
		})
		if got := call(t, a, fmt.Sprintf(`{"op":"send","to":%q,"body":1}`, c.id)); got != "false" {
			t.Fatalf("send to a dead node's connection: %s", got)
		}
		if got := call(t, a, fmt.Sprintf(`{"op":"send","to":%q,"body":"still"}`, b.id)); got != "true" {
			t.Fatalf("send between live nodes: %s", got)
		}
		expectPush(t, b, "direct", `"still"`)
	})
	t.Run("without NATS local traffic goes on and cross-node work fails at once", func(t *testing.T) {
		ns.Shutdown()
		ns.WaitForShutdown()
		testutil.Eventually(t, "n1 to notice", func() bool { return n1.cluster.Healthy() != nil })
		if got := call(t, a, `{"op":"echo"}`); got != `{"op":"echo"}` {
			t.Fatalf("local traffic without NATS: %s", got)
		}
		start := time.Now()
		if got := call(t, a, fmt.Sprintf(`{"op":"send","to":%q,"body":1}`, b.id)); got != "error: cluster_unavailable" {
			t.Fatalf("cross-node send without NATS: %s", got)
		}
		if got := call(t, a, `{"op":"incr"}`); got != "error: cluster_unavailable" {
			t.Fatalf("store without NATS: %s", got)
		}
		if time.Since(start) > 2*time.Second {
			t.Fatalf("failing without NATS took %v", time.Since(start))
		}
	})
	t.Run("when NATS is back, so is the cluster", func(t *testing.T) {
		ns2 := natsServer(t, natsPort, natsDir)
		defer func() {
			ns2.Shutdown()
			ns2.WaitForShutdown()
		}()
		testutil.Eventually(t, "n1 and n2 to reconnect", func() bool { return n1.cluster.Healthy() == nil && n2.cluster.Healthy() == nil })
		// A send is at most once: one made while the other node is still
		// subscribing again after the reconnect is lost, so try until one
		// arrives.
		testutil.Eventually(t, "a cross-node send to arrive again", func() bool {
			if call(t, a, fmt.Sprintf(`{"op":"send","to":%q,"body":"back"}`, b.id)) != "true" {
				return false
			}
			select {
			case m := <-b.pushes:
				return m.Route == "direct" && string(m.Payload) == `"back"`
			case <-time.After(250 * time.Millisecond):
				return false
			}
		})
		if got := call(t, b, `{"op":"incr"}`); got != "61" {
			t.Fatalf("the store after the NATS restart: %s", got)
		}
	})
}
