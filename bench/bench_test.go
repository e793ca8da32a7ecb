package bench

import (
	"context"
	"errors"
	"net"
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
