package gateway

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/secureagentmessaging/samgw/protocol"

	"github.com/secureagentmessaging/samgw/internal/testutil"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// waitTimeout bounds every wait in these tests; it is generous so a loaded
// machine does not fail them, and never reached when things work.
const waitTimeout = testutil.WaitTimeout

func quietLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }

// startServer serves cfg on a loopback port and shuts the server down when
// the test ends.
func startServer(t *testing.T, cfg Config) (*Server, string) {
	t.Helper()
	return startServerOn(t, "127.0.0.1:0", cfg)
}

// startServerOn is startServer on a given address.
func startServerOn(t *testing.T, addr string, cfg Config) (*Server, string) {
	t.Helper()
	if cfg.Logger == nil {
		cfg.Logger = quietLogger()
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := NewServer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
		if err := <-served; !errors.Is(err, ErrServerClosed) {
			t.Errorf("Serve returned %v, want ErrServerClosed", err)
		}
	})
	return srv, ln.Addr().String()
}

// peer is a raw test client speaking the protocol by hand.
type peer struct {
	t  *testing.T
	nc net.Conn
	r  *bufio.Reader
}

// frame is a received frame, decoded loosely for assertions.
type frame struct {
	Type      string          `json:"type"`
	ID        string          `json:"id"`
	Route     string          `json:"route"`
	Timestamp int64           `json:"timestamp"`
	Payload   json.RawMessage `json:"payload"`
	Seq       uint64          `json:"seq"`
	raw       string
}

func dialPeer(t *testing.T, addr string) *peer {
	t.Helper()
	nc, err := net.DialTimeout("tcp", addr, waitTimeout)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	return &peer{t: t, nc: nc, r: bufio.NewReaderSize(nc, 1<<16)}
}

func (p *peer) send(s string) {
	p.t.Helper()
	p.nc.SetWriteDeadline(time.Now().Add(waitTimeout))
	if _, err := io.WriteString(p.nc, s); err != nil {
		p.t.Fatalf("write: %v", err)
	}
}

// next returns the next frame, failing the test after waitTimeout.
func (p *peer) next() frame {
	p.t.Helper()
	f, err := p.read(waitTimeout)
	if err != nil {
		p.t.Fatalf("reading a frame: %v", err)
	}
	return f
}

// nextSkipping returns the next frame that is not a periodic keepalive.
func (p *peer) nextSkipping() frame {
	p.t.Helper()
	for {
		f := p.next()
		if f.Type == "keepalive" && f.ID == "" {
			continue
		}
		return f
	}
}

func (p *peer) read(timeout time.Duration) (frame, error) {
	p.nc.SetReadDeadline(time.Now().Add(timeout))
	line, err := p.r.ReadString('\n')
	if err != nil {
		return frame{}, err
	}
	var f frame
	if err := json.Unmarshal([]byte(line), &f); err != nil {
		p.t.Fatalf("server sent invalid JSON %q: %v", line, err)
	}
	f.raw = strings.TrimSuffix(line, "\n")
	return f, nil
}

// expectEOF checks that the server closes the connection next (after any
// periodic keepalives), then hangs up as a well-behaved client does.
func (p *peer) expectEOF() {
	p.t.Helper()
	for {
		f, err := p.read(waitTimeout)
		if err == nil && f.Type == "keepalive" && f.ID == "" {
			continue
		}
		if err == nil {
			p.t.Fatalf("got %s, want the connection closed", f.raw)
		}
		if !errors.Is(err, io.EOF) && !isReset(err) {
			p.t.Fatalf("got %v, want EOF", err)
		}
		p.nc.Close()
		return
	}
}

func isReset(err error) bool {
	return strings.Contains(err.Error(), "connection reset")
}

// expectFrame checks a frame's type, id and payload (compared as JSON text).
func expectFrame(t *testing.T, f frame, typ, id, payload string) {
	t.Helper()
	if f.Type != typ || f.ID != id || (payload != "" && string(f.Payload) != payload) {
		t.Fatalf("got %s, want type %q id %q payload %s", f.raw, typ, id, payload)
	}
	if f.Timestamp == 0 {
		t.Fatalf("frame %s has no timestamp", f.raw)
	}
}

// expectError checks an error frame's code and id.
func expectError(t *testing.T, f frame, code protocol.Code, id string) {
	t.Helper()
	var p struct{ Code, Message string }
	json.Unmarshal(f.Payload, &p)
	if f.Type != "error" || p.Code != string(code) || f.ID != id || p.Message == "" {
		t.Fatalf("got %s, want error %s for id %q", f.raw, code, id)
	}
}

// dataFrames is n data frames with payloads and ids 0..n-1, for one write.
func dataFrames(n int) string {
	var b strings.Builder
	for i := range n {
		fmt.Fprintf(&b, `{"type":"data","payload":%d,"id":"%d"}`+"\n", i, i)
	}
	return b.String()
}
