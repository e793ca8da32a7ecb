package scripting

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/secureagentmessaging/samgw/gateway"
	"github.com/secureagentmessaging/samgw/internal/gatewaytest"
	"github.com/secureagentmessaging/samgw/protocol"

	"github.com/secureagentmessaging/samgw/internal/testutil"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const waitTimeout = testutil.WaitTimeout

// writeScripts writes files (name → source) into dir.
func writeScripts(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	for name, src := range files {
		path := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(src), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// fixture is an engine on a scripts directory, served on loopback.
type fixture struct {
	t      *testing.T
	dir    string
	engine *Engine
	srv    *gateway.Server
	addr   string
	logs   *testutil.SyncBuffer
}

func newFixture(t *testing.T, files map[string]string, cfg Config) *fixture {
	t.Helper()
	return newFixtureWith(t, files, cfg, gateway.Config{})
}

// newFixtureWith is newFixture with server settings.
func newFixtureWith(t *testing.T, files map[string]string, cfg Config, gcfg gateway.Config) *fixture {
	t.Helper()
	dir := t.TempDir()
	writeScripts(t, dir, files)
	logs := &testutil.SyncBuffer{}
	cfg.Dir = dir
	cfg.Logger = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	e, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	gcfg.Handler = e
	srv, addr := gatewaytest.Serve(t, "", gcfg)
	return &fixture{t: t, dir: dir, engine: e, srv: srv, addr: addr, logs: logs}
}

// client connects a gateway client; pushes (frames that answer no request)
// arrive on the returned channel.
func (f *fixture) client() (*gateway.Client, chan *protocol.Message) {
	f.t.Helper()
	pushes := make(chan *protocol.Message, 1024)
	c, err := gateway.NewClient(gateway.ClientConfig{
		Addr:   f.addr,
		Logger: slog.New(slog.DiscardHandler),
		OnMessage: func(m *protocol.Message) {
			if m.Type == protocol.TypeData && len(m.ID) > 2 && m.ID[:2] == "s-" {
				pushes <- m.Clone()
			}
		},
		BackoffMin: time.Hour,
	})
	if err != nil {
		f.t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	if err := c.Connect(ctx); err != nil {
		f.t.Fatal(err)
	}
	f.t.Cleanup(func() { c.Disconnect("test over") })
	return c, pushes
}

// request sends payload on route and returns the reply's payload, or the
// error frame's error; anything else fails the test, so it must run on the
// test's goroutine (other goroutines use tryRequest).
func request(t *testing.T, c *gateway.Client, route, payload string) (string, error) {
	t.Helper()
	got, err := tryRequest(c, route, payload)
	var pe *protocol.Error
	if err != nil && !errors.As(err, &pe) {
		t.Fatal(err)
	}
	return got, err
}

// tryRequest is request for any goroutine: every failure is returned, an
// error frame as its *protocol.Error.
func tryRequest(c *gateway.Client, route, payload string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	reply, err := c.RequestMessage(ctx, protocol.Message{Type: protocol.TypeData, Route: route, Payload: []byte(payload)})
	var pe *protocol.Error
	if err != nil && !errors.As(err, &pe) {
		return "", fmt.Errorf("request %s %s: %w", route, truncate(payload, 200), err)
	}
	if err != nil {
		return "", err
	}
	if reply.Route != route {
		return "", fmt.Errorf("reply route %q, want %q", reply.Route, route)
	}
	return string(reply.Payload), nil
}

// mustReply sends and expects a reply equal (as JSON) to want.
func mustReply(t *testing.T, c *gateway.Client, route, payload, want string) {
	t.Helper()
	got, err := request(t, c, route, payload)
	if err != nil {
		t.Fatalf("route %q payload %s: %v", route, payload, err)
	}
	if !jsonEqual(got, want) {
		t.Fatalf("route %q payload %s: reply %s, want %s", route, payload, got, want)
	}
}

// mustFail sends and expects an error frame with code, whose message
// contains text.
func mustFail(t *testing.T, c *gateway.Client, route, payload string, code protocol.Code, text string) {
	t.Helper()
	got, err := request(t, c, route, payload)
	var pe *protocol.Error
	if !errors.As(err, &pe) || pe.Code != code || !bytes.Contains([]byte(pe.Message), []byte(text)) {
		t.Fatalf("route %q payload %s: reply %q, error %v; want %s containing %q", route, payload, got, err, code, text)
	}
}

func jsonEqual(a, b string) bool {
	var x, y any
	if json.Unmarshal([]byte(a), &x) != nil || json.Unmarshal([]byte(b), &y) != nil {
		return false
	}
	xa, _ := json.Marshal(x)
	ya, _ := json.Marshal(y)
	return bytes.Equal(xa, ya)
}

func quietLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }

func readFile(dir, name string) (string, error) {
	b, err := os.ReadFile(filepath.Join(dir, name))
	return string(b), err
}

// newRawConn connects without a client, reporting the close reason the
// server sends.
func newRawConn(t *testing.T, addr string, closed chan<- string) net.Conn {
	t.Helper()
	nc, err := net.DialTimeout("tcp", addr, waitTimeout)
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		r := protocol.NewReader(nc, protocol.Limits{})
		for {
			frame, err := r.ReadFrame()
			if err != nil {
				closed <- "EOF without close"
				return
			}
			var m protocol.Message
			if protocol.Decode(frame, &m, protocol.Limits{}) == nil && m.Type == protocol.TypeClose {
				closed <- string(m.Payload)
				return
			}
		}
	}()
	return nc
}
