package gateway

import (
	"bufio"
	"bytes"
	stdflate "compress/flate" // an independent DEFLATE: the server uses klauspost's
	"encoding/json"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/secureagentmessaging/samgw/internal/testutil"
	"github.com/secureagentmessaging/samgw/protocol"
)

// llmText is agent-like traffic: prose an LLM wrote, in a JSON tool result.
const llmText = `The quarterly report shows revenue grew twelve percent while operating costs fell three percent. ` +
	`I recommend reviewing the vendor contracts listed below before the board meeting, starting with the two ` +
	`that renew automatically next month. The search tool returned ten matching documents; the three most ` +
	`relevant are summarised here, with their owners and the dates they were last changed.`

// zpeer is a raw client speaking compressed NDJSON by hand, with the
// standard library's DEFLATE (the server's is another implementation).
type zpeer struct {
	t     *testing.T
	nc    net.Conn
	plain *bufio.Reader // the server's bytes up to its auth reply
	zw    *stdflate.Writer
	out   bytes.Buffer
	lines *bufio.Reader // the server's frames after the reply, inflated
}

func dialZPeer(t *testing.T, addr string) *zpeer {
	t.Helper()
	nc, err := net.DialTimeout("tcp", addr, waitTimeout)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	z := &zpeer{t: t, nc: nc, plain: bufio.NewReader(nc)}
	z.zw, _ = stdflate.NewWriter(&z.out, stdflate.BestSpeed)
	return z
}

// start sends the auth frame with payload and, in the same write, the
// compressed frames that follow it (a client need not wait for the reply).
func (z *zpeer) start(payload string, frames ...string) {
	z.t.Helper()
	z.compress(frames...)
	z.write(append([]byte(`{"type":"auth","id":"a","payload":`+payload+"}\n"), z.take()...))
}

// compress adds frames to the compressed stream, flushed.
func (z *zpeer) compress(frames ...string) {
	for _, f := range frames {
		z.zw.Write([]byte(f + "\n"))
	}
	z.zw.Flush()
}

func (z *zpeer) take() []byte {
	b := bytes.Clone(z.out.Bytes())
	z.out.Reset()
	return b
}

func (z *zpeer) write(b []byte) {
	z.t.Helper()
	z.nc.SetWriteDeadline(time.Now().Add(waitTimeout))
	if _, err := z.nc.Write(b); err != nil {
		z.t.Fatalf("write: %v", err)
	}
}

// send sends frames, compressed, in one write.
func (z *zpeer) send(frames ...string) {
	z.t.Helper()
	z.compress(frames...)
	z.write(z.take())
}

// readPlain reads a frame before the stream is compressed.
func (z *zpeer) readPlain() frame {
	z.t.Helper()
	return z.decode(z.plain)
}

// agreed reads the auth reply, checks it agrees to deflate, and reads
// compressed frames from then on.
func (z *zpeer) agreed(identity string) {
	z.t.Helper()
	f := z.readPlain()
	var p struct {
		OK       bool
		Identity string
		Compress string
	}
	json.Unmarshal(f.Payload, &p)
	if f.Type != "auth" || !p.OK || p.Identity != identity || p.Compress != "deflate" {
		z.t.Fatalf("auth reply %s; want ok, identity %q, compress deflate", f.raw, identity)
	}
	z.lines = bufio.NewReader(stdflate.NewReader(z.plain))
}

// next reads a compressed frame, skipping periodic keepalives.
func (z *zpeer) next() frame {
	z.t.Helper()
	for {
		f := z.decode(z.lines)
		if f.Type != "keepalive" || f.ID != "" {
			return f
		}
	}
}

func (z *zpeer) decode(r *bufio.Reader) frame {
	z.t.Helper()
	z.nc.SetReadDeadline(time.Now().Add(waitTimeout))
	line, err := r.ReadString('\n')
	if err != nil {
		z.t.Fatalf("reading a frame: %v", err)
	}
	var f frame
	if err := json.Unmarshal([]byte(line), &f); err != nil {
		z.t.Fatalf("server sent invalid JSON %q: %v", line, err)
	}
	f.raw = strings.TrimSuffix(line, "\n")
	return f
}

// expectClosed reads until the connection ends and returns the reason of
// the close frame on the way ("" if none came).
func (z *zpeer) expectClosed(r *bufio.Reader) string {
	z.t.Helper()
	reason := ""
	z.nc.SetReadDeadline(time.Now().Add(waitTimeout))
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			if isTimeout(err) {
				z.t.Fatal("the connection is still open")
			}
			return reason
		}
		var f frame
		if json.Unmarshal([]byte(line), &f) == nil && f.Type == "close" {
			reason = protocol.ParseClose(f.Payload)
		}
	}
}

func connBytesIn(t *testing.T, srv *Server) uint64 {
	t.Helper()
	conns := srv.Connections()
	if len(conns) != 1 {
		t.Fatalf("%d connections, want 1", len(conns))
	}
	return conns[0].BytesIn
}

func TestCompressedStream(t *testing.T) {
	tokenAuth := &AuthConfig{Identities: []Identity{{Name: "agent", TokenSHA256: tokenHash("agent-token")}}}
	for _, tc := range []struct {
		name, payload, identity string
		auth                    *AuthConfig
	}{
		{"token", `{"token":"agent-token","compress":"deflate"}`, "agent", tokenAuth},
		{"without identities", `{"compress":"deflate"}`, "", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv, addr := startServer(t, Config{Handler: echoHandler(), Auth: tc.auth})
			z := dialZPeer(t, addr)
			// The first frames ride in the auth frame's write: the server
			// has them buffered, still compressed, when it agrees.
			z.start(tc.payload, `{"type":"data","id":"1","payload":"one"}`, `{"type":"ping","id":"2"}`)
			z.agreed(tc.identity)
			expectFrame(t, z.next(), "data", "1", `"one"`)
			expectFrame(t, z.next(), "pong", "2", "")

			// Agent-like traffic shrinks on the wire both ways.
			payload, _ := json.Marshal(map[string]any{"role": "assistant", "content": llmText})
			before := connBytesIn(t, srv)
			var plain int
			for i := range 50 {
				f := `{"type":"data","id":"r` + string(rune('a'+i%26)) + `","payload":` + string(payload) + `}`
				plain += len(f) + 1
				z.send(f)
				if got := z.next(); got.Type != "data" || string(got.Payload) != string(payload) {
					t.Fatalf("echo %d: %s", i, got.raw)
				}
			}
			wire := connBytesIn(t, srv) - before
			if wire*3 > uint64(plain) {
				t.Fatalf("%d plain bytes took %d on the wire; want under a third", plain, wire)
			}
		})
	}
}

func TestCompressionRefused(t *testing.T) {
	tokenAuth := &AuthConfig{Identities: []Identity{{Name: "agent", TokenSHA256: tokenHash("agent-token")}}}
	t.Run("unknown algorithm", func(t *testing.T) {
		_, addr := startServer(t, Config{Handler: echoHandler(), Auth: tokenAuth})
		z := dialZPeer(t, addr)
		z.write([]byte(`{"type":"auth","id":"a","payload":{"token":"agent-token","compress":"s2"}}` + "\nS2 BYTES"))
		expectError(t, z.readPlain(), protocol.CodeInvalidMessage, "a")
		if reason := z.expectClosed(z.plain); reason != ReasonCompressionUnsupported {
			t.Fatalf("closed with %q, want %q", reason, ReasonCompressionUnsupported)
		}
	})
	t.Run("not the first frame", func(t *testing.T) {
		_, addr := startServer(t, Config{Handler: echoHandler()})
		z := dialZPeer(t, addr)
		z.write([]byte(`{"type":"ping","id":"p"}` + "\n"))
		expectFrame(t, z.readPlain(), "pong", "p", "")
		z.write([]byte(`{"type":"auth","id":"a","payload":{"compress":"deflate"}}` + "\n"))
		expectError(t, z.readPlain(), protocol.CodeInvalidMessage, "a")
		if reason := z.expectClosed(z.plain); reason != ReasonCompressionUnsupported {
			t.Fatalf("closed with %q, want %q", reason, ReasonCompressionUnsupported)
		}
	})
	t.Run("wrong token", func(t *testing.T) {
		_, addr := startServer(t, Config{Handler: echoHandler(), Auth: tokenAuth})
		z := dialZPeer(t, addr)
		z.start(`{"token":"forged","compress":"deflate"}`, `{"type":"data","id":"1","payload":"one"}`)
		expectError(t, z.readPlain(), protocol.CodeUnauthorized, "a")
		if reason := z.expectClosed(z.plain); reason != ReasonUnauthorized {
			t.Fatalf("closed with %q, want %q", reason, ReasonUnauthorized)
		}
	})
}

// TestCompressedStreamBadInput: a corrupt stream and an inflation bomb end
// their own connection with a reason, bounded, and nobody else's.
func TestCompressedStreamBadInput(t *testing.T) {
	srv, addr := startServer(t, Config{Handler: echoHandler(), MaxFrameSize: 64 << 10})
	bystander := dialPeer(t, addr)
	bystander.send(`{"type":"ping","id":"b1"}` + "\n")
	expectFrame(t, bystander.next(), "pong", "b1", "")

	t.Run("corrupt", func(t *testing.T) {
		z := dialZPeer(t, addr)
		z.start(`{"compress":"deflate"}`)
		z.agreed("")
		z.write([]byte("\xff\xff\xff\xff not deflate at all"))
		if reason := z.expectClosed(z.lines); reason != ReasonBadCompression {
			t.Fatalf("closed with %q, want %q", reason, ReasonBadCompression)
		}
	})
	t.Run("blank line bomb", func(t *testing.T) {
		// 64 MiB of newlines: no frame, so no frame limit applies, in
		// about 64 KiB on the wire.
		z := dialZPeer(t, addr)
		z.start(`{"compress":"deflate"}`)
		z.agreed("")
		blank := bytes.Repeat([]byte("\n"), 1<<20)
		var wire int
		done := make(chan struct{})
		go func() { // the server stops reading: its close matters, not our write
			defer close(done)
			for range 64 {
				z.zw.Write(blank)
				z.zw.Flush()
				b := z.take()
				wire += len(b)
				if _, err := z.nc.Write(b); err != nil {
					return
				}
			}
		}()
		if reason := z.expectClosed(z.lines); reason != ReasonBadCompression {
			t.Fatalf("closed with %q, want %q", reason, ReasonBadCompression)
		}
		z.nc.Close()
		<-done
		if wire > 1<<20 {
			t.Fatalf("the bomb took %d bytes on the wire; the test means a small one", wire)
		}
	})
	t.Run("oversized frame", func(t *testing.T) {
		z := dialZPeer(t, addr)
		z.start(`{"compress":"deflate"}`)
		z.agreed("")
		z.send(`{"type":"data","id":"big","payload":"` + strings.Repeat("a", 128<<10) + `"}`)
		if reason := z.expectClosed(z.lines); reason != ReasonFrameTooLarge {
			t.Fatalf("closed with %q, want %q", reason, ReasonFrameTooLarge)
		}
	})
	bystander.send(`{"type":"ping","id":"b2"}` + "\n")
	expectFrame(t, bystander.next(), "pong", "b2", "")
	testutil.Eventually(t, "only the bystander left", func() bool { return srv.ConnectionCount() == 1 })
}

func TestClientCompress(t *testing.T) {
	srv, addr := startServer(t, Config{
		Handler: echoHandler(),
		Auth:    &AuthConfig{Identities: []Identity{{Name: "agent", TokenSHA256: tokenHash("agent-token")}}},
	})
	pushed := make(chan string, 1)
	c := newTestClient(t, ClientConfig{Addr: addr, Token: "agent-token", Compress: true, OnMessage: func(m *protocol.Message) {
		if m.Type == protocol.TypeData && m.Route == "push" {
			pushed <- string(m.Payload)
		}
	}})
	if err := c.Connect(testCtx(t)); err != nil {
		t.Fatal(err)
	}
	var plain int
	for i := range 20 {
		reply, err := c.Request(testCtx(t), map[string]any{"n": i, "content": llmText})
		if err != nil {
			t.Fatal(err)
		}
		var got struct{ Content string }
		if json.Unmarshal(reply.Payload, &got); got.Content != llmText {
			t.Fatalf("reply %d: %s", i, reply.Payload)
		}
		plain += len(reply.Payload)
	}
	conns := srv.Connections()
	if len(conns) != 1 || conns[0].BytesOut*2 > uint64(plain) {
		t.Fatalf("connections %+v: %d payload bytes echoed; want them in under half on the wire", conns, plain)
	}
	srv.Range(func(conn *Conn) bool {
		conn.Send([]byte(`"a push"`), "push") //nolint:errcheck // checked by its arrival
		return true
	})
	select {
	case p := <-pushed:
		if p != `"a push"` {
			t.Fatalf("push %s", p)
		}
	case <-time.After(waitTimeout):
		t.Fatal("no push")
	}
}

// TestClientCompressRefused: a client that asks for compression a server
// cannot give fails Connect with the server's reason.
func TestClientCompressRefused(t *testing.T) {
	srv, _ := startServer(t, Config{Handler: echoHandler(), Auth: &AuthConfig{Identities: []Identity{{Name: "agent", TokenSHA256: tokenHash("agent-token")}}}})
	url := serveHTTP(t, srv, WebSocketConfig{})
	p := dialWS(t, url, nil)
	p.send(`{"type":"auth","id":"a","payload":{"token":"agent-token","compress":"deflate"}}`)
	if f := p.next(); f.Type != "error" || f.ID != "a" || !strings.Contains(string(f.Payload), ReasonCompressionUnsupported) {
		t.Fatalf("auth asking for compression over WebSocket answered %s", f.raw)
	}
	if f := p.next(); f.Type != "close" || protocol.ParseClose(f.Payload) != ReasonCompressionUnsupported {
		t.Fatalf("then %s; want the close", f.raw)
	}
}

// TestCompressedReadSurvivesEarlyDeadline: the keep-alive deadline set
// from an earlier frame fires before the timeout since the last one; on a
// compressed connection it is set again below the DEFLATE reader (which
// would keep the error for good) and the read goes on.
func TestCompressedReadSurvivesEarlyDeadline(t *testing.T) {
	client, server := net.Pipe()
	defer client.Close()
	cfg := newWireConfig(protocol.Limits{}, 0, 16*time.Second, time.Second, time.Second, 0, false)
	w := newWire(server, &cfg)
	defer server.Close()
	w.compressed.Store(true)
	// The deadline was set from a frame 15.9 s ago (timeout 16 s); a frame
	// came 900 ms after that one, within a sixteenth of the timeout, so the
	// deadline was not moved: it fires in 100 ms, a second before the
	// timeout since the last frame has passed.
	old := time.Now().Add(-15900 * time.Millisecond).UnixNano()
	w.deadlineFor = old
	w.lastFrame.Store(old + int64(900*time.Millisecond))
	server.SetReadDeadline(time.Unix(0, old).Add(16 * time.Second))
	go func() {
		// Quiet past the early deadline (the behaviour under test), well
		// within the timeout since the last frame.
		time.Sleep(300 * time.Millisecond)
		client.Write([]byte("late but in time"))
	}()
	buf := make([]byte, 64)
	n, err := deadlineReader{w}.Read(buf)
	if err != nil || string(buf[:n]) != "late but in time" {
		t.Fatalf("read %q, %v; want the late bytes", buf[:n], err)
	}
}
