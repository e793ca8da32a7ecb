package metrics

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/secureagentmessaging/samgw/gateway"
	"github.com/secureagentmessaging/samgw/scripting"
)

// TestConnz lists the open connections: authenticated ones only (a socket
// that never authenticates is not there), oldest first, with their
// identity and subscriptions; filtered by identity and paged.
func TestConnz(t *testing.T) {
	quiet := slog.New(slog.DiscardHandler)
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "default.lua"), []byte(`function on_data(msg, conn) return gateway.subscribe(conn.id, msg.payload) end`), 0o644)
	engine, err := scripting.New(scripting.Config{Dir: dir, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	hash := func(s string) string { h := sha256.Sum256([]byte(s)); return hex.EncodeToString(h[:]) }
	srv, err := gateway.NewServer(gateway.Config{Handler: engine, Logger: quiet, Auth: &gateway.AuthConfig{Identities: []gateway.Identity{
		{Name: "agent-a", TokenSHA256: hash("token-a")}, {Name: "agent-b", TokenSHA256: hash("token-b")},
	}}})
	if err != nil {
		t.Fatal(err)
	}
	m := New()
	m.Attach(srv, engine)
	addr := serveGateway(t, srv)
	ctx := t.Context()
	base := serveMetrics(t, m)

	silent, err := net.Dial("tcp", addr) // never authenticates
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	for i, token := range []string{"token-a", "token-b", "token-a"} {
		c, err := gateway.NewClient(gateway.ClientConfig{Addr: addr, Token: token, Logger: quiet, KeepAliveInterval: time.Hour})
		if err != nil {
			t.Fatal(err)
		}
		if err := c.Connect(ctx); err != nil {
			t.Fatal(err)
		}
		defer c.Disconnect("bye")
		if i == 1 {
			if _, err := c.Request(ctx, "room.1"); err != nil {
				t.Fatal(err)
			}
		}
	}
	var all connz
	if code, body := get(t, base+"/connz"); code != 200 || json.Unmarshal([]byte(body), &all) != nil {
		t.Fatalf("/connz %d %s", code, body)
	}
	if all.Total != 3 || len(all.Connections) != 3 || all.Limit != defaultConnzLimit {
		t.Fatalf("total %d, %d listed, limit %d; want the 3 authenticated", all.Total, len(all.Connections), all.Limit)
	}
	ids := []string{all.Connections[0].Identity, all.Connections[1].Identity, all.Connections[2].Identity}
	if ids[0] != "agent-a" || ids[1] != "agent-b" || ids[2] != "agent-a" {
		t.Fatalf("identities oldest first: %v", ids)
	}
	if subs := all.Connections[1].Subscriptions; len(subs) != 1 || subs[0] != "room.1" || all.Connections[0].Transport != "tcp" {
		t.Fatalf("entry %+v", all.Connections[1])
	}
	var page connz
	if _, body := get(t, base+"/connz?identity=agent-a&offset=1&limit=1"); json.Unmarshal([]byte(body), &page) != nil ||
		page.Total != 2 || len(page.Connections) != 1 || page.Connections[0].ID != all.Connections[2].ID {
		t.Fatalf("filtered page: %s", body)
	}
	if _, body := get(t, base+"/connz?limit=5000"); json.Unmarshal([]byte(body), &page) != nil || page.Limit != maxConnzLimit {
		t.Fatalf("limit is not capped: %s", body)
	}
	for _, bad := range []string{"?limit=0", "?offset=-1", "?limit=x"} {
		if code, _ := get(t, base+"/connz"+bad); code != 400 {
			t.Fatalf("/connz%s: %d, want 400", bad, code)
		}
	}
}
