package bench

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"sync/atomic"
	"testing"
	"time"

	"github.com/secureagentmessaging/samgw/gateway"
	"github.com/secureagentmessaging/samgw/internal/gatewaytest"
	"github.com/secureagentmessaging/samgw/internal/testutil"
	"github.com/secureagentmessaging/samgw/protocol"
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

func TestHoldTimesBroadcastsOverSeveralServers(t *testing.T) {
	sum := sha256.Sum256([]byte("tok"))
	var servers []*gateway.Server
	broadcast := gateway.HandlerFunc(func(_ context.Context, c *gateway.Conn, m *protocol.Message) error {
		if m.Route != "fanout" {
			return c.Reply(m, m.Payload)
		}
		for _, s := range servers { // the "cluster": every server's connections
			s.Range(func(conn *gateway.Conn) bool {
				if conn != c {
					conn.Send(m.Payload, "b") //nolint:errcheck // counted by the holder
				}
				return true
			})
		}
		return nil
	})
	auth := &gateway.AuthConfig{Identities: []gateway.Identity{{Name: "x", TokenSHA256: hex.EncodeToString(sum[:])}}}
	var addrs []string
	for range 2 {
		srv, addr := gatewaytest.Serve(t, "", gateway.Config{Handler: broadcast, Auth: auth})
		servers = append(servers, srv)
		addrs = append(addrs, addr)
	}
	res, err := Hold(context.Background(), HoldConfig{Addrs: addrs, Token: "tok", Conns: 30, Duration: 2500 * time.Millisecond,
		Broadcasts: 2, BroadcastRoute: "fanout",
		Opened: func() { // spread in turn over both servers
			testutil.Eventually(t, "15 authenticated connections on each server", func() bool {
				return len(servers[0].Connections()) >= 15 && len(servers[1].Connections()) >= 15
			})
		}})
	if err != nil {
		t.Fatal(err)
	}
	if res.Lost != 0 || len(res.Broadcasts) != 2 {
		t.Fatalf("result %+v", res)
	}
	for i, b := range res.Broadcasts {
		if b.Reached != 30 || b.LastMs <= 0 {
			t.Errorf("broadcast %d: %+v, want all 30 reached", i, b)
		}
	}
}

func TestHoldSendsAHelloAndWaitsForEveryAnswer(t *testing.T) {
	var hellos atomic.Int64
	handler := gateway.HandlerFunc(func(_ context.Context, c *gateway.Conn, m *protocol.Message) error {
		if m.Route == "hello" && string(m.Payload) == `{"subscribe":"room.1"}` {
			hellos.Add(1)
		}
		return c.Reply(m, m.Payload)
	})
	_, addr := gatewaytest.Serve(t, "", gateway.Config{Handler: handler})
	var atOpen int64
	res, err := Hold(context.Background(), HoldConfig{Addr: addr, Conns: 40, Duration: 200 * time.Millisecond,
		Hello: []byte(`{"subscribe":"room.1"}`), HelloRoute: "hello",
		Opened: func() { atOpen = hellos.Load() }})
	if err != nil {
		t.Fatal(err)
	}
	if atOpen != 40 || res.Lost != 0 {
		t.Fatalf("%d hellos handled when the run began, %d lost; want 40 and 0", atOpen, res.Lost)
	}
}
