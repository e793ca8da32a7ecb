package gateway

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/secureagentmessaging/samgw/protocol"
)

// prototypePeer reads the way the TypeScript prototype's agents do: one
// JSON object per read (socket.on("data", d => JSON.parse(d.toString().trim()))).
// A read holding two frames is a parse error, and both are lost.
type prototypePeer struct {
	nc          net.Conn
	mu          sync.Mutex
	parsed      map[string]int // frames parsed, by type
	parseErrors int
	done        chan struct{}
}

func dialPrototype(t *testing.T, addr string) *prototypePeer {
	t.Helper()
	nc, err := net.DialTimeout("tcp", addr, waitTimeout)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	p := &prototypePeer{nc: nc, parsed: map[string]int{}, done: make(chan struct{})}
	go p.readLoop()
	return p
}

func (p *prototypePeer) readLoop() {
	defer close(p.done)
	buf := make([]byte, 64<<10)
	for {
		n, err := p.nc.Read(buf)
		if err != nil {
			return
		}
		var m struct{ Type string }
		p.mu.Lock()
		if json.Unmarshal([]byte(strings.TrimSpace(string(buf[:n]))), &m) != nil {
			p.parseErrors++
		} else {
			p.parsed[m.Type]++
		}
		p.mu.Unlock()
	}
}

// send writes one frame in a write of its own, as the prototype does.
func (p *prototypePeer) send(t *testing.T, frame string) {
	t.Helper()
	if _, err := p.nc.Write([]byte(frame + "\n")); err != nil {
		t.Fatal(err)
	}
}

// result waits for the server to hang up and returns what was read.
func (p *prototypePeer) result(t *testing.T) (map[string]int, int) {
	t.Helper()
	select {
	case <-p.done:
	case <-time.After(waitTimeout):
		t.Fatal("the server did not hang up")
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.parsed, p.parseErrors
}

// runPrototypeDemo plays the prototype's demo at 1/100 of its time: data at
// once, a ping at 50 ms, data at 100 ms, a keepalive every 100 ms from
// both sides (the server's interval is set to match), close at 300 ms.
func runPrototypeDemo(t *testing.T, addr string) (map[string]int, int) {
	t.Helper()
	p := dialPrototype(t, addr)
	start := time.Now()
	// The demo's schedule, as the prototype's timers run it: this paces
	// the traffic, it does not wait for anything to happen.
	at := func(d time.Duration) { <-time.After(time.Until(start.Add(d))) }
	p.send(t, `{"type":"data","payload":{"name":"John","age":30,"email":"john@example.com"},"id":"d1"}`)
	at(50 * time.Millisecond)
	p.send(t, `{"type":"ping","id":"p1"}`)
	at(100 * time.Millisecond)
	p.send(t, `{"type":"data","payload":{"message":"Hello again!"},"id":"d2"}`)
	p.send(t, `{"type":"keepalive","id":"k1"}`)
	at(200 * time.Millisecond)
	p.send(t, `{"type":"keepalive","id":"k2"}`)
	at(300 * time.Millisecond)
	p.send(t, `{"type":"close","payload":{"reason":"demo over"}}`)
	return p.result(t)
}

// TestOneFramePerWriteServesPrototypeAgents: with the mode on, the demo's
// traffic reaches a one-JSON-per-read peer with every frame parsed, 20 runs
// in a row; the periodic keepalive that falls due with the answer to the
// peer's own is skipped.
func TestOneFramePerWriteServesPrototypeAgents(t *testing.T) {
	_, addr := startServer(t, Config{OneFramePerWrite: true, FramePacing: 20 * time.Millisecond, KeepAliveInterval: 100 * time.Millisecond})
	for run := range 20 {
		parsed, parseErrors := runPrototypeDemo(t, addr)
		if parseErrors != 0 || parsed["data"] != 2 || parsed["pong"] != 1 || parsed["close"] != 1 {
			t.Fatalf("run %d: %d reads did not parse; parsed %v", run, parseErrors, parsed)
		}
	}
}

// TestBatchingMergesFrames shows what docs/protocol.md says of the default: a
// burst of answers goes out in one write, which a one-JSON-per-read peer
// cannot parse; the same burst in the one-frame-per-write mode can.
func TestBatchingMergesFrames(t *testing.T) {
	var burst strings.Builder
	for i := range 50 {
		fmt.Fprintf(&burst, `{"type":"ping","id":"%d"}`+"\n", i)
	}
	burst.WriteString(`{"type":"close"}`)
	for _, tt := range []struct {
		name   string
		cfg    Config
		merged bool
	}{
		{"batched (default)", Config{}, true},
		{"one frame per write", Config{OneFramePerWrite: true, FramePacing: 20 * time.Millisecond}, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, addr := startServer(t, tt.cfg)
			p := dialPrototype(t, addr)
			p.send(t, burst.String())
			parsed, parseErrors := p.result(t)
			if merged := parseErrors > 0; merged != tt.merged {
				t.Fatalf("%d reads held more than one frame, parsed %v; want merged=%v", parseErrors, parsed, tt.merged)
			}
			if !tt.merged && parsed["pong"] != 50 {
				t.Fatalf("parsed %v, want 50 pongs", parsed)
			}
		})
	}
}

// TestClientOneFramePerWrite: a client in the mode sends a burst of frames
// to a server that parses one JSON object per read (the prototype's), and
// every frame parses.
func TestClientOneFramePerWrite(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	got := make(chan [2]int, 1)
	go func() {
		nc, err := ln.Accept()
		if err != nil {
			got <- [2]int{}
			return
		}
		defer nc.Close()
		parsed, failed := 0, 0
		buf := make([]byte, 64<<10)
		for parsed+failed < 20 {
			nc.SetReadDeadline(time.Now().Add(waitTimeout))
			n, err := nc.Read(buf)
			if err != nil {
				break
			}
			var m struct{ Type string }
			if json.Unmarshal([]byte(strings.TrimSpace(string(buf[:n]))), &m) != nil {
				failed += 2 // at least two frames lost in one read
			} else if m.Type == "data" {
				parsed++
			}
		}
		got <- [2]int{parsed, failed}
	}()
	c := newTestClient(t, ClientConfig{Addr: ln.Addr().String(), OneFramePerWrite: true, FramePacing: 20 * time.Millisecond,
		KeepAliveInterval: time.Hour, NoReconnect: true})
	if err := c.Connect(t.Context()); err != nil {
		t.Fatal(err)
	}
	for i := range 20 {
		if _, err := c.Send(i); err != nil {
			t.Fatal(err)
		}
	}
	if r := <-got; r[0] != 20 || r[1] != 0 {
		t.Fatalf("the prototype server parsed %d data frames and lost %d", r[0], r[1])
	}
}

// TestWritesResumeAfterPartialWrites writes far more than a socket with a
// tiny send buffer holds: the write is done in many partial writes, each
// after waiting for room, and every byte must arrive once, in order. To a
// peer that does not read, the same write fails at the write timeout.
func TestWritesResumeAfterPartialWrites(t *testing.T) {
	pair := func(t *testing.T, writeTimeout time.Duration) (*wire, net.Conn) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		client, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { client.Close() })
		server, err := ln.Accept()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { server.Close() })
		if err := server.(*net.TCPConn).SetWriteBuffer(4096); err != nil {
			t.Fatal(err)
		}
		cfg := newWireConfig(protocol.Limits{}, 0, 0, writeTimeout, 0, 0, false)
		return newWire(server, &cfg), client
	}
	big := make([]byte, 1<<20)
	for i := range big {
		big[i] = byte(i % 251) // a period that no chunk size shares: a lost or repeated chunk shows
	}

	t.Run("arrives whole", func(t *testing.T) {
		w, client := pair(t, waitTimeout)
		done := make(chan error, 1)
		go func() { done <- w.writeOnce(big) }()
		client.SetReadDeadline(time.Now().Add(waitTimeout))
		got := make([]byte, len(big))
		if _, err := io.ReadFull(client, got); err != nil {
			t.Fatalf("read: %v", err)
		}
		if err := <-done; err != nil {
			t.Fatalf("write: %v", err)
		}
		if !bytes.Equal(got, big) {
			t.Fatal("the bytes read are not the bytes written")
		}
		if n := w.bytesOut.Load(); n != uint64(len(big)) {
			t.Fatalf("%d bytes counted out, want %d", n, len(big))
		}
	})
	t.Run("times out when the peer does not read", func(t *testing.T) {
		w, _ := pair(t, 200*time.Millisecond)
		start := time.Now()
		err := w.writeOnce(big)
		var op *net.OpError
		if !isTimeout(err) || !errors.As(err, &op) || op.Op != "write" {
			t.Fatalf("write to a peer that does not read: %v, want a write timeout", err)
		}
		if took := time.Since(start); took > waitTimeout {
			t.Fatalf("the write timed out after %v, with a write timeout of 200ms", took)
		}
	})
	t.Run("fails when the peer has reset", func(t *testing.T) {
		w, client := pair(t, waitTimeout)
		client.(*net.TCPConn).SetLinger(0) //nolint:errcheck // a reset, not a clean close
		client.Close()
		start := time.Now()
		var err error
		for range 64 { // the first writes may land before the reset does
			if err = w.writeOnce(big[:4096]); err != nil {
				break
			}
		}
		var op *net.OpError
		if !errors.As(err, &op) || op.Op != "write" || !(errors.Is(err, syscall.EPIPE) || errors.Is(err, syscall.ECONNRESET)) {
			t.Fatalf("write to a reset peer: %v, want EPIPE or ECONNRESET", err)
		}
		if took := time.Since(start); took > waitTimeout {
			t.Fatalf("the write failed after %v", took)
		}
	})
}
