package bench

import (
	"context"
	"errors"
	"net"
	"net/http/httptest"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/secureagentmessaging/samgw/gateway"
	"github.com/secureagentmessaging/samgw/internal/gatewaytest"
	"github.com/secureagentmessaging/samgw/protocol"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func serve(t *testing.T, h gateway.Handler) string {
	t.Helper()
	_, addr := gatewaytest.Serve(t, "", gateway.Config{Handler: h})
	return addr
}

func TestRunCountsEveryReply(t *testing.T) {
	addr := serve(t, nil)
	res, err := Run(context.Background(), Config{Addr: addr, Conns: 3, Pipeline: 4, Messages: 999, Size: 100})
	if err != nil {
		t.Fatal(err)
	}
	if res.Received < 999 || res.Sent != res.Received || res.Errors != 0 || res.FramesPerSec <= 0 || res.Size != 100 {
		t.Fatalf("result %+v", res)
	}
	if len(makePayload(100)) != 100 {
		t.Fatalf("payload of %d bytes", len(makePayload(100)))
	}
}

func TestRunDetectsWrongReplies(t *testing.T) {
	addr := serve(t, gateway.HandlerFunc(func(_ context.Context, c *gateway.Conn, m *protocol.Message) error {
		return c.Reply(m, []byte(`"tampered"`))
	}))
	res, err := Run(context.Background(), Config{Addr: addr, Conns: 1, Messages: 10})
	if !errors.Is(err, ErrNoReplies) || res.Errors != 10 || res.FirstError == "" {
		t.Fatalf("%v %+v", err, res)
	}
}

func TestRunByDuration(t *testing.T) {
	addr := serve(t, nil)
	res, err := Run(context.Background(), Config{Addr: addr, Conns: 2, Duration: 200 * time.Millisecond})
	if err != nil || res.Errors != 0 || res.ElapsedSec < 0.2 {
		t.Fatalf("%v %+v", err, res)
	}
}

func TestRunConnectError(t *testing.T) {
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := ln.Addr().String()
	ln.Close()
	if _, err := Run(context.Background(), Config{Addr: addr, Messages: 1}); err == nil {
		t.Fatal("no error for a closed port")
	}
}

func TestRunOpenLoop(t *testing.T) {
	addr := serve(t, nil)
	res, err := Run(context.Background(), Config{Addr: addr, Conns: 4, Rate: 2000, Duration: 500 * time.Millisecond})
	if err != nil || res.Errors != 0 {
		t.Fatalf("%v %+v", err, res)
	}
	// About 1000 frames in half a second at 2000/s; generous bounds for a
	// loaded machine, but far from closed-loop throughput.
	if res.Received < 500 || res.Received > 1500 {
		t.Fatalf("received %d frames at 2000/s for 0.5 s", res.Received)
	}
}

// A server that stops reading holds the open loop's writes up; the frames
// that fell due meanwhile count the wait (no coordinated omission), however
// late they finally went out.
func TestOpenLoopCountsTheServersStall(t *testing.T) {
	const stall = 300 * time.Millisecond
	var once sync.Once
	addr := serve(t, gateway.HandlerFunc(func(_ context.Context, c *gateway.Conn, m *protocol.Message) error {
		once.Do(func() { time.Sleep(stall) }) // the server stops reading for this long
		return c.Reply(m, m.Payload)
	}))
	res, err := Run(context.Background(), Config{Addr: addr, Conns: 1, Rate: 2000, Size: 2048, Duration: 2 * stall, Dial: dialSmallSendBuffer})
	if err != nil || res.Errors != 0 || res.Sent != res.Received {
		t.Fatalf("%v %+v", err, res)
	}
	// Half the run's frames fell due during the stall: their latencies
	// spread from the stall down to nothing, so the p90 is most of it.
	if res.P90 < ms(stall/3) {
		t.Fatalf("p90 %.1f ms after a %v stall: the frames held up did not count it", res.P90, stall)
	}
}

// dialSmallSendBuffer dials with a 4 KiB send buffer, so the generator's
// writes block soon after the server stops reading.
func dialSmallSendBuffer(ctx context.Context, network, addr string) (net.Conn, error) {
	d := net.Dialer{Control: func(_, _ string, rc syscall.RawConn) error {
		var err error
		if cerr := rc.Control(func(fd uintptr) {
			err = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_SNDBUF, 4096)
		}); cerr != nil {
			return cerr
		}
		return err
	}}
	return d.DialContext(ctx, network, addr)
}

// An open-loop run against a server that fell far behind ends on time: the
// writer catches up in bounded writes, the write still blocked when the run
// is over is cut off, and the replies still due are waited for at most
// drainTimeout. (Before, the writer sent everything due since it was last
// blocked in one write, and the run went on until that write timed out.)
func TestOpenLoopEndsOnTimeAgainstAServerThatFellBehind(t *testing.T) {
	const run = 500 * time.Millisecond
	addr := serve(t, gateway.HandlerFunc(func(_ context.Context, c *gateway.Conn, m *protocol.Message) error {
		time.Sleep(time.Millisecond) // at most 1,000 frames/s, against 20,000 offered
		return c.Reply(m, m.Payload)
	}))
	res, err := Run(context.Background(), Config{Addr: addr, Conns: 1, Rate: 20000, Size: 1024, Duration: run, Dial: dialSmallSendBuffer})
	if res.Received == 0 {
		t.Fatalf("no replies: %v %+v", err, res)
	}
	if limit := run + drainTimeout + 2*time.Second; res.Elapsed > limit {
		t.Fatalf("a %v run took %v (limit %v)", run, res.Elapsed, limit)
	}
	if res.Sent < res.Received {
		t.Fatalf("sent %d < received %d: frames cut off counted as unsent", res.Sent, res.Received)
	}
}

// An open-loop frame's latency counts from when it was due only if the
// server held it up; the generator's own late timer is not the server's.
func TestLatencyStart(t *testing.T) {
	t0 := time.Unix(1000, 0)
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	tests := []struct {
		name                 string
		due, busyUntil, sent time.Time
		want                 time.Time
	}{
		{"sent when due", at(10), at(5), at(10), at(10)},
		{"timer woke late: from the send", at(10), at(5), at(11), at(11)},
		{"due while a write was blocked: from due", at(10), at(30), at(30), at(10)},
		{"due the instant the write returned: from due", at(10), at(10), at(12), at(10)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := latencyStart(tt.due, tt.busyUntil, tt.sent); !got.Equal(tt.want) {
				t.Fatalf("latencyStart(due %v, busy until %v, sent %v) = %v, want %v",
					tt.due.Sub(t0), tt.busyUntil.Sub(t0), tt.sent.Sub(t0), got.Sub(t0), tt.want.Sub(t0))
			}
		})
	}
}

// A closed loop measures each reply from when its frame was sent, keeps
// Pipeline frames in flight, and at the end of the run waits for the
// replies still due instead of counting them as lost.
func TestClosedLoopTimesRepliesAndDrains(t *testing.T) {
	const delay = 20 * time.Millisecond
	addr := serve(t, gateway.HandlerFunc(func(_ context.Context, c *gateway.Conn, m *protocol.Message) error {
		time.Sleep(delay) // the server's latency under test
		return c.Reply(m, m.Payload)
	}))
	res, err := Run(context.Background(), Config{Addr: addr, Conns: 2, Pipeline: 3, Duration: 150 * time.Millisecond})
	if err != nil || res.Errors != 0 {
		t.Fatalf("%v %+v", err, res)
	}
	if res.Sent != res.Received || res.Received == 0 {
		t.Fatalf("sent %d, received %d: replies in flight at the end were lost", res.Sent, res.Received)
	}
	// A connection's frames are handled one at a time, so with three in
	// flight a reply waits behind two others: about three delays (one,
	// if the pipeline were not kept full).
	if res.P50 < ms(2*delay) || res.Max > ms(20*delay) {
		t.Fatalf("latency p50 %.1f ms, max %.1f ms with a %v handler and 3 in flight", res.P50, res.Max, delay)
	}
}

// TestRunOverWebSocket: the load goes over the server's WebSocket
// transport (with and without deflate) and every reply is counted and
// checked, as over TCP.
func TestRunOverWebSocket(t *testing.T) {
	srv, _ := gatewaytest.Serve(t, "", gateway.Config{})
	ws, err := srv.WebSocket(gateway.WebSocketConfig{Compression: true})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(ws)
	defer hs.Close()
	for _, compress := range []bool{false, true} {
		res, err := Run(context.Background(), Config{Conns: 3, Pipeline: 8, Messages: 3000, Size: 600,
			Dial: DialWebSocket("ws"+strings.TrimPrefix(hs.URL, "http"), compress)})
		if err != nil {
			t.Fatal(err)
		}
		if res.Received < 3000 || res.Errors != 0 {
			t.Fatalf("compress %v: %+v", compress, res)
		}
	}
}
