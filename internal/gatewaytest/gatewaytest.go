// Package gatewaytest starts gateway servers for the tests of the packages
// above gateway (gateway's own tests cannot import it).
package gatewaytest

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"testing"

	"github.com/secureagentmessaging/samgw/gateway"
	"github.com/secureagentmessaging/samgw/internal/testutil"
)

// Serve runs a server for cfg on addr ("" for a free loopback port) until
// the test ends, and returns it with its address. A nil Logger is quiet.
func Serve(t testing.TB, addr string, cfg gateway.Config) (*gateway.Server, string) {
	t.Helper()
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	srv, err := gateway.NewServer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), testutil.WaitTimeout)
		defer cancel()
		srv.Shutdown(ctx)
		if err := <-served; !errors.Is(err, gateway.ErrServerClosed) {
			t.Errorf("Serve: %v", err)
		}
	})
	return srv, ln.Addr().String()
}
