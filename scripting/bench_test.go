package scripting

import (
	"context"
	"log/slog"
	"net"
	"testing"
	"time"

	"github.com/secureagentmessaging/samgw/bench"
	"github.com/secureagentmessaging/samgw/gateway"
	"github.com/secureagentmessaging/samgw/protocol"
	"github.com/secureagentmessaging/samgw/scripts"
)

// BenchmarkHandleData measures one Lua echo call without the network: decode
// the payload into Lua, call on_data, encode the reply.
func BenchmarkHandleData(b *testing.B) {
	e, err := New(Config{FS: scripts.Handlers(), Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		b.Fatal(err)
	}
	payload := []byte(`{"name":"John","age":30,"email":"john@example.com","tags":["a","b"],"nested":{"x":1.5,"y":null}}`)
	gen := e.current.Load()
	st, err := gen.get(time.Second)
	if err != nil {
		b.Fatal(err)
	}
	defer gen.put(st)
	msg := &protocol.Message{Type: protocol.TypeData, ID: "k1-1", Payload: payload}
	b.ReportAllocs()
	for b.Loop() {
		if err := st.echoOnly(msg); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkEndToEnd compares, in one run, the Go echo and the Lua echo over
// loopback: 64 connections with 16 frames in flight each, 128-byte
// payloads. Reported as frames/s.
func BenchmarkEndToEnd(b *testing.B) {
	lua, err := New(Config{FS: scripts.Handlers(), Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		b.Fatal(err)
	}
	for _, tc := range []struct {
		name    string
		handler gateway.Handler
	}{{"GoEcho", gateway.Echo}, {"LuaEcho", lua}} {
		b.Run(tc.name, func(b *testing.B) {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				b.Fatal(err)
			}
			srv, err := gateway.NewServer(gateway.Config{Handler: tc.handler, Logger: slog.New(slog.DiscardHandler)})
			if err != nil {
				b.Fatal(err)
			}
			done := make(chan error, 1)
			go func() { done <- srv.Serve(ln) }()
			defer func() {
				srv.Shutdown(context.Background())
				<-done
			}()
			b.ResetTimer()
			res, err := bench.Run(context.Background(), bench.Config{
				Addr: ln.Addr().String(), Conns: 64, Pipeline: 16, Size: 128, Messages: max(b.N, 1000),
			})
			if err != nil || res.Errors != 0 {
				b.Fatalf("%v, %d errors: %s", err, res.Errors, res.FirstError)
			}
			b.ReportMetric(res.FramesPerSec, "frames/s")
			b.ReportMetric(res.P99, "p99-ms")
		})
	}
}
