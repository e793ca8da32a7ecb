package gateway

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// BenchmarkEchoTransports: the Go echo over TCP and over WebSocket (with
// and without permessage-deflate on 128-byte payloads, under the
// threshold: what compression costs a connection that negotiated it),
// 64 connections × 16 frames in flight each, and as HTTP calls (64
// clients, one call at a time each), in one process, client and server
// sharing the cores.
func BenchmarkEchoTransports(b *testing.B) {
	const conns, inFlight = 64, 16
	srv, ln := benchEchoServer(b)
	ws, err := srv.WebSocket(WebSocketConfig{Compression: true})
	if err != nil {
		b.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("/v1/ws", ws)
	mux.Handle("/v1/routes/", srv.Routes(5*time.Second))
	hln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	hs := &http.Server{Handler: mux}
	go hs.Serve(hln) //nolint:errcheck // ends with Close
	defer hs.Close()
	frame := `{"type":"data","payload":{"text":"` + strings.Repeat("x", 110) + `"}}`

	run := func(b *testing.B, dial func() (send func([]byte) error, recv func() error, closer func())) {
		var done atomic.Int64
		b.ResetTimer()
		start := time.Now()
		var wg sync.WaitGroup
		per := max(b.N/conns, 1)
		for range conns {
			send, recv, closer := dial()
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer closer()
				sent, got := 0, 0
				for got < per {
					for sent < per && sent-got < inFlight {
						if send([]byte(frame)) != nil {
							return
						}
						sent++
					}
					if recv() != nil {
						return
					}
					got++
					done.Add(1)
				}
			}()
		}
		wg.Wait()
		b.ReportMetric(float64(done.Load())/time.Since(start).Seconds(), "frames/s")
	}
	b.Run("tcp", func(b *testing.B) {
		run(b, func() (func([]byte) error, func() error, func()) {
			nc, err := net.Dial("tcp", ln.Addr().String())
			if err != nil {
				b.Fatal(err)
			}
			w := bufio.NewWriter(nc)
			r := bufio.NewReaderSize(nc, 1<<16)
			return func(p []byte) error {
					w.Write(p)
					w.WriteByte('\n')
					return w.Flush()
				}, func() error {
					_, err := r.ReadSlice('\n')
					return err
				}, func() { nc.Close() }
		})
	})
	for _, mode := range []websocket.CompressionMode{websocket.CompressionDisabled, websocket.CompressionContextTakeover} {
		name := map[websocket.CompressionMode]string{websocket.CompressionDisabled: "ws", websocket.CompressionContextTakeover: "ws-deflate"}[mode]
		b.Run(name, func(b *testing.B) {
			run(b, func() (func([]byte) error, func() error, func()) {
				c, _, err := websocket.Dial(context.Background(), fmt.Sprintf("ws://%s/v1/ws", hln.Addr()), &websocket.DialOptions{CompressionMode: mode})
				if err != nil {
					b.Fatal(err)
				}
				c.SetReadLimit(-1)
				ctx := context.Background()
				return func(p []byte) error { return c.Write(ctx, websocket.MessageText, p) },
					func() error { _, _, err := c.Read(ctx); return err },
					func() { c.CloseNow() }
			})
		})
	}
}

// BenchmarkHTTPCalls: POST /v1/routes/echo against the Go echo, 64
// clients at once with keep-alive.
func BenchmarkHTTPCalls(b *testing.B) {
	srv, err := NewServer(Config{Handler: echoHandler(), Logger: quietLogger(), KeepAliveInterval: time.Hour, MaxConns: 1000})
	if err != nil {
		b.Fatal(err)
	}
	defer srv.Shutdown(context.Background())
	hln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	hs := &http.Server{Handler: srv.Routes(5 * time.Second)}
	go hs.Serve(hln) //nolint:errcheck // ends with Close
	defer hs.Close()
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	url := "http://" + hln.Addr().String() + "/v1/routes/echo"
	body := `{"text":"` + strings.Repeat("x", 110) + `"}`
	b.SetParallelism(32) // 64 on 2 cores
	start := time.Now()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			resp, err := client.Post(url, "application/json", strings.NewReader(body))
			if err != nil {
				b.Error(err)
				return
			}
			io.Copy(io.Discard, resp.Body) //nolint:errcheck // drained for keep-alive
			resp.Body.Close()
			if resp.StatusCode != 200 {
				b.Errorf("status %d", resp.StatusCode)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "calls/s")
}

// benchEchoServer serves the echo handler on a loopback port until the
// benchmark ends.
func benchEchoServer(b *testing.B) (*Server, net.Listener) {
	b.Helper()
	srv, err := NewServer(Config{Handler: echoHandler(), Logger: quietLogger(), KeepAliveInterval: time.Hour, MaxConns: 1000})
	if err != nil {
		b.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	go srv.Serve(ln)                                         //nolint:errcheck // ends with Shutdown
	b.Cleanup(func() { srv.Shutdown(context.Background()) }) //nolint:errcheck // the benchmark is over
	return srv, ln
}
