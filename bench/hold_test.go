package bench

import (
	"context"
	"testing"
	"time"

	"github.com/secureagentmessaging/samgw/gateway"
	"github.com/secureagentmessaging/samgw/internal/gatewaytest"
	"github.com/secureagentmessaging/samgw/internal/testutil"
)

func TestHoldKeepsConnectionsAndTimesPings(t *testing.T) {
	srv, addr := gatewaytest.Serve(t, "", gateway.Config{Handler: gateway.Echo, KeepAliveTimeout: 300 * time.Millisecond, KeepAliveInterval: time.Hour})
	res, err := Hold(context.Background(), HoldConfig{
		Addr: addr, Conns: 60, Duration: 700 * time.Millisecond, KeepAlive: 100 * time.Millisecond, SourceAddrs: 3,
		Opened: func() { // on the test goroutine
			testutil.Eventually(t, "60 connections on the server", func() bool { return srv.ConnectionCount() >= 60 })
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	// The server's keep-alive timeout (300 ms) is shorter than the run: only
	// the holder's keepalives (every 100 ms) kept the connections.
	if res.Conns != 60 || res.Lost != 0 {
		t.Errorf("held %d, lost %d; want 60 held, none lost", res.Conns, res.Lost)
	}
	if res.Pings < 3 || res.PingP99 <= 0 || res.PingMax < res.PingP99 {
		t.Errorf("pings: %+v", res)
	}
	testutil.Eventually(t, "the held connections to close", func() bool { return srv.ConnectionCount() == 0 })
}

func TestHoldValidates(t *testing.T) {
	if _, err := Hold(context.Background(), HoldConfig{Conns: 0, Duration: time.Second}); err == nil {
		t.Fatal("Hold with no connections: no error")
	}
}
