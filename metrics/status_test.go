package metrics

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/secureagentmessaging/samgw/gateway"
	"github.com/secureagentmessaging/samgw/scripting"
)

// TestStatus: /status.json and /status show the version, the connections
// by transport and identity, each route's calls, errors and p99, the
// reloads, subscriptions, checks and nodes; the page is one self-contained
// document (no script, no other file) and escapes what identities and
// errors carry.
func TestStatus(t *testing.T) {
	quiet := slog.New(slog.DiscardHandler)
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "default.lua"), []byte(`function on_data(msg, conn)
  if msg.payload == "fail" then error("no") end
  return gateway.subscribe(conn.id, "room.1")
end`), 0o644)
	m := New()
	engine, err := scripting.New(scripting.Config{Dir: dir, Logger: quiet, ObserveCall: m.ObserveCall})
	if err != nil {
		t.Fatal(err)
	}
	hash := func(s string) string { h := sha256.Sum256([]byte(s)); return hex.EncodeToString(h[:]) }
	srv, err := gateway.NewServer(gateway.Config{Handler: engine, Logger: quiet, Auth: &gateway.AuthConfig{Identities: []gateway.Identity{
		{Name: "agent-a", TokenSHA256: hash("token-a")}, {Name: "<b>agent-b</b>", TokenSHA256: hash("token-b")},
	}}})
	if err != nil {
		t.Fatal(err)
	}
	m.Attach(srv, engine)
	m.AddCheck("store", func() error { return errors.New("store <down>") })
	started := time.Now().Add(-time.Hour)
	m.SetStatus(StatusSources{Version: "1.2.3", Started: started, Subscriptions: engine.SubscriptionCount, Nodes: func() []string { return []string{"alpha", "beta"} }})
	addr := serveGateway(t, srv)
	base := serveMetrics(t, m)
	ctx := t.Context()
	for i, token := range []string{"token-a", "token-b", "token-a"} {
		c, err := gateway.NewClient(gateway.ClientConfig{Addr: addr, Token: token, Logger: quiet, KeepAliveInterval: time.Hour})
		if err != nil {
			t.Fatal(err)
		}
		if err := c.Connect(ctx); err != nil {
			t.Fatal(err)
		}
		defer c.Disconnect("bye")
		if _, err := c.Request(ctx, "x"); err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			c.Request(ctx, "fail") //nolint:errcheck // an error, counted
		}
	}
	var st status
	code, body := get(t, base+"/status.json")
	if code != 200 || json.Unmarshal([]byte(body), &st) != nil {
		t.Fatalf("/status.json %d %s", code, body)
	}
	if st.Version != "1.2.3" || st.Started.Unix() != started.Unix() || !strings.HasPrefix(st.Uptime, "1h0m") {
		t.Fatalf("version/uptime: %+v", st)
	}
	if st.Connections.Open != 3 || st.Connections.ByTransport["tcp"] != 3 ||
		len(st.Connections.ByIdentity) != 2 || st.Connections.ByIdentity[0] != (statusCount{"agent-a", 2}) {
		t.Fatalf("connections: %+v", st.Connections)
	}
	if len(st.Routes) != 1 || st.Routes[0].Route != "default" || st.Routes[0].Calls != 4 || st.Routes[0].Errors != 1 || st.Routes[0].P99Ms <= 0 {
		t.Fatalf("routes: %+v", st.Routes)
	}
	if st.Scripts == nil || st.Scripts.Generation != 1 || st.Topics == nil || st.Topics.Subscriptions != 3 {
		t.Fatalf("scripts %+v topics %+v", st.Scripts, st.Topics)
	}
	if len(st.Checks) != 1 || st.Checks[0].OK || len(st.Nodes) != 2 {
		t.Fatalf("checks %+v nodes %v", st.Checks, st.Nodes)
	}

	code, page := get(t, base+"/status")
	for _, want := range []string{`<b id="version">1.2.3</b>`, `<b id="open">3</b>`, "&lt;b&gt;agent-b&lt;/b&gt;", "store &lt;down&gt;", "alpha, beta", "<td>default</td>"} {
		if code != 200 || !strings.Contains(page, want) {
			t.Fatalf("/status lacks %q:\n%s", want, page)
		}
	}
	for _, banned := range []string{"<script", "src=", "<link"} {
		if strings.Contains(page, banned) {
			t.Fatalf("/status has %q: it must stand alone", banned)
		}
	}
}
