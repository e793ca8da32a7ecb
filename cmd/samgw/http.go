package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/secureagentmessaging/samgw/gateway"
)

// Bounds of the HTTP listener besides its flags: idle keep-alive
// connections end, and headers are small.
const (
	httpIdleTimeout = 60 * time.Second
	httpMaxHeader   = 16 << 10
)

// serveHTTP starts --http-listen: GET /v1/ws (WebSocket) and POST
// /v1/routes/{route}, served by srv like its TCP connections, with the TCP
// listener's TLS certificate when it has one. It runs until bg stops.
func (b *background) serveHTTP(cctx *cli.Context, srv *gateway.Server, tlsCfg *tls.Config, log *slog.Logger) error {
	ws, err := srv.WebSocket(gateway.WebSocketConfig{
		Origins:              cctx.StringSlice("ws-origins"),
		Compression:          cctx.Bool("ws-compression"),
		CompressionThreshold: cctx.Int("ws-compression-threshold"),
	})
	if err != nil {
		return fmt.Errorf("--ws-origins: %w", err)
	}
	headerTimeout, readTimeout := cctx.Duration("http-header-timeout"), cctx.Duration("http-read-timeout")
	if headerTimeout <= 0 || readTimeout <= 0 {
		return fmt.Errorf("--http-header-timeout and --http-read-timeout must be positive, got %v and %v", headerTimeout, readTimeout)
	}
	mux := http.NewServeMux()
	mux.Handle("/v1/ws", ws)
	mux.Handle("/v1/routes/", srv.Routes(cctx.Duration("script-timeout")+5*time.Second))
	hs := &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: headerTimeout,
		ReadTimeout:       readTimeout,
		IdleTimeout:       httpIdleTimeout,
		MaxHeaderBytes:    httpMaxHeader,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelDebug),
	}
	ln, err := net.Listen("tcp", cctx.String("http-listen"))
	if err != nil {
		return fmt.Errorf("--http-listen: %w", err)
	}
	if tlsCfg != nil {
		c := tlsCfg.Clone()
		c.NextProtos = []string{"http/1.1"} // WebSocket upgrades are HTTP/1.1
		ln = tls.NewListener(ln, c)
	}
	log.Info("HTTP listening", "addr", ln.Addr().String(), "paths", "/v1/ws /v1/routes/{route}", "tls", tlsCfg != nil,
		"ws_origins", len(cctx.StringSlice("ws-origins")), "ws_compression", cctx.Bool("ws-compression"))
	b.run(func(ctx context.Context) {
		done := make(chan error, 1)
		go func() { done <- hs.Serve(ln) }()
		select {
		case err := <-done:
			if !errors.Is(err, http.ErrServerClosed) {
				log.Error("HTTP listener failed", "error", err)
			}
			return
		case <-ctx.Done():
		}
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		hs.Shutdown(sctx) //nolint:errcheck // the WebSockets are the gateway's to close
		<-done
	})
	return nil
}
