package delivery

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"go.uber.org/goleak"

	"github.com/secureagentmessaging/samgw/gateway"
	"github.com/secureagentmessaging/samgw/internal/gatewaytest"
	"github.com/secureagentmessaging/samgw/internal/testutil"
	"github.com/secureagentmessaging/samgw/protocol"
)

// fixture is an embedded JetStream, the mailboxes on it and a gateway
// that resumes connections of the identities alice, bob and carol (token:
// the name and "-token").
type fixture struct {
	t     *testing.T
	emb   *Embedded
	boxes *Mailboxes
	srv   *gateway.Server
	addr  string
}

// Every goroutine a test starts (sessions, the ack applier, the embedded
// server's) ends by the time its cleanups have run.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var testIdentities = []string{"alice", "bob", "carol"}

// startEmbedded starts an embedded JetStream in a folder of the test's.
func startEmbedded(t testing.TB) *Embedded {
	t.Helper()
	emb, err := StartEmbedded(EmbeddedConfig{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(emb.Shutdown)
	return emb
}

// connectTo makes an in-process connection to emb, closed with the test.
func connectTo(t testing.TB, emb *Embedded, name string) *nats.Conn {
	t.Helper()
	nc, err := emb.Connect(name)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// testAuth is token authentication for the test identities (token: the
// name and "-token").
func testAuth() *gateway.AuthConfig {
	var ids []gateway.Identity
	for _, name := range testIdentities {
		sum := sha256.Sum256([]byte(name + "-token"))
		ids = append(ids, gateway.Identity{Name: name, TokenSHA256: hex.EncodeToString(sum[:])})
	}
	return &gateway.AuthConfig{Identities: ids}
}

func newFixture(t *testing.T, cfg Config) *fixture {
	t.Helper()
	emb := startEmbedded(t)
	cfg.Conn = connectTo(t, emb, "test")
	if cfg.Known == nil {
		cfg.Known = func(id string) bool { return strings.Contains(" alice bob carol ", " "+id+" ") }
	}
	boxes, err := New(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(boxes.Close)
	f := &fixture{t: t, emb: emb, boxes: boxes}
	f.srv, f.addr = serveGateway(t, boxes)
	return f
}

// serveGateway serves a gateway with token authentication for the test
// identities, attached to boxes.
func serveGateway(t *testing.T, boxes gateway.Mailboxes) (*gateway.Server, string) {
	return gatewaytest.Serve(t, "", gateway.Config{Auth: testAuth(), Mailboxes: boxes})
}

// deliver stores n messages {"n": i} (i from 1) for identity and returns
// their seqs.
func (f *fixture) deliver(identity string, n int) []uint64 {
	f.t.Helper()
	seqs := make([]uint64, n)
	for i := range n {
		seq, err := f.boxes.Deliver(f.t.Context(), identity, fmt.Appendf(nil, `{"n":%d}`, i+1), DeliverOptions{Route: "inbox"})
		if err != nil {
			f.t.Fatalf("Deliver %d: %v", i+1, err)
		}
		seqs[i] = seq
	}
	return seqs
}

// peer is a raw protocol connection: frames in, frames out, with deadlines.
type peer struct {
	t  *testing.T
	nc net.Conn
	r  *bufio.Reader
}

func dial(t *testing.T, addr string) *peer {
	t.Helper()
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	return &peer{t: t, nc: nc, r: bufio.NewReaderSize(nc, 1<<20)}
}

// connect dials and authenticates as identity, asking to resume when
// resume is set, and returns the auth reply's payload.
func (f *fixture) connect(identity string, resume bool) (*peer, []byte) {
	f.t.Helper()
	p := dial(f.t, f.addr)
	payload := protocol.AppendAuthPayload(nil, identity+"-token")
	if resume {
		payload = protocol.AppendResumeAuthPayload(nil, identity+"-token")
	}
	p.send(&protocol.Message{Type: protocol.TypeAuth, ID: "a1", Payload: payload})
	m := p.next()
	if m.Type != protocol.TypeAuth {
		f.t.Fatalf("auth answered with %s %s", m.Type, m.Payload)
	}
	return p, m.Payload
}

func (p *peer) send(m *protocol.Message) {
	p.t.Helper()
	if _, err := p.nc.Write(protocol.AppendFrame(nil, m)); err != nil {
		p.t.Fatal(err)
	}
}

func (p *peer) sendRaw(frame string) {
	p.t.Helper()
	if _, err := p.nc.Write([]byte(frame + "\n")); err != nil {
		p.t.Fatal(err)
	}
}

// next reads one frame, skipping keepalives, within the wait timeout.
func (p *peer) next() *protocol.Message {
	p.t.Helper()
	for {
		p.nc.SetReadDeadline(time.Now().Add(testutil.WaitTimeout))
		line, err := p.r.ReadBytes('\n')
		if err != nil {
			p.t.Fatalf("read: %v", err)
		}
		var m protocol.Message
		if err := protocol.Decode(line[:len(line)-1], &m, protocol.Limits{}); err != nil {
			p.t.Fatalf("decode %q: %v", line, err)
		}
		if m.Type == protocol.TypeKeepAlive {
			continue
		}
		return m.Clone()
	}
}

// data reads the next n frames, which must be mailbox data frames.
func (p *peer) data(n int) []*protocol.Message {
	p.t.Helper()
	out := make([]*protocol.Message, n)
	for i := range n {
		m := p.next()
		if m.Type != protocol.TypeData || m.Seq == 0 {
			p.t.Fatalf("frame %d of %d: %s seq %d %s, want a mailbox data frame", i+1, n, m.Type, m.Seq, m.Payload)
		}
		out[i] = m
	}
	return out
}

func (p *peer) ack(seq uint64) {
	p.t.Helper()
	p.send(&protocol.Message{Type: protocol.TypeAck, Payload: protocol.AppendAckPayload(nil, seq)})
}

// pingPong proves the connection still answers: the next frame that is
// not a mailbox data frame must be the pong.
func (p *peer) pingPong() {
	p.t.Helper()
	p.send(&protocol.Message{Type: protocol.TypePing, ID: "pp"})
	for {
		m := p.next()
		if m.Type == protocol.TypeData && m.Seq != 0 {
			continue
		}
		if m.Type != protocol.TypePong || m.ID != "pp" {
			p.t.Fatalf("ping answered with %s %s", m.Type, m.Payload)
		}
		return
	}
}

// waitApplied waits until identity's mailbox holds want messages (acks
// are applied to the store in the background).
func (f *fixture) waitApplied(identity string, want uint64) {
	f.t.Helper()
	testutil.Eventually(f.t, fmt.Sprintf("%s's mailbox to hold %d", identity, want), func() bool {
		n, err := f.boxes.Pending(identity)
		return err == nil && n == want
	})
}
