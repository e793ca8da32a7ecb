package scripting

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/secureagentmessaging/samgw/bench"
	"github.com/secureagentmessaging/samgw/gateway"
	"github.com/secureagentmessaging/samgw/internal/gatewaytest"
	"github.com/secureagentmessaging/samgw/internal/gctune"
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
	st, err := gen.get(0, time.Second)
	if err != nil {
		b.Fatal(err)
	}
	defer gen.put(0, st)
	msg := &protocol.Message{Type: protocol.TypeData, ID: "k1-1", Payload: payload}
	b.ReportAllocs()
	for b.Loop() {
		if err := st.echoOnly(msg); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkHandleDataParallel is BenchmarkHandleData on every P at once
// (with the garbage collector tuned as serve tunes it),
// each caller with its own pool hint (its own connection) and taking a
// state from the pool for every call, as HandleData does: ns/op should stay
// flat as -cpu grows (go test ./scripting -bench HandleDataParallel -cpu
// 1,2,4,8), and the mutex profile shows no lock that all callers share.
func BenchmarkHandleDataParallel(b *testing.B) {
	defer gctune.Start(gctune.DefaultMinHeap)() // the collector as samgw serve runs it
	e, err := New(Config{FS: scripts.Handlers(), Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		b.Fatal(err)
	}
	payload := []byte(`{"name":"John","age":30,"email":"john@example.com","tags":["a","b"],"nested":{"x":1.5,"y":null}}`)
	gen := e.current.Load()
	var hints atomic.Uint64
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		hint := hints.Add(1)
		msg := &protocol.Message{Type: protocol.TypeData, ID: "k1-1", Payload: payload}
		for pb.Next() {
			st, err := gen.get(hint, time.Second)
			if err != nil {
				b.Error(err)
				return
			}
			err = st.echoOnly(msg)
			gen.put(hint, st)
			if err != nil {
				b.Error(err)
				return
			}
		}
	})
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
			_, addr := gatewaytest.Serve(b, "", gateway.Config{Handler: tc.handler})
			b.ResetTimer()
			res, err := bench.Run(context.Background(), bench.Config{
				Addr: addr, Conns: 64, Pipeline: 16, Size: 128, Messages: max(b.N, 1000),
			})
			if err != nil || res.Errors != 0 {
				b.Fatalf("%v, %d errors: %s", err, res.Errors, res.FirstError)
			}
			b.ReportMetric(res.FramesPerSec, "frames/s")
			b.ReportMetric(res.P99, "p99-ms")
		})
	}
}

// BenchmarkUpstreamOverhead measures what upstream.request adds per message:
// the Lua echo against a Lua handler that forwards every message to a Go
// echo upstream over the pooled connection, both over loopback with 16
// connections × 16 frames in flight.
func BenchmarkUpstreamOverhead(b *testing.B) {
	quiet := slog.New(slog.DiscardHandler)
	_, upAddr := gatewaytest.Serve(b, "", gateway.Config{})
	dir := b.TempDir()
	os.WriteFile(filepath.Join(dir, "default.lua"), []byte(`function on_data(msg) return msg.payload end`), 0o644)
	os.WriteFile(filepath.Join(dir, "forward.lua"), []byte(`function on_data(msg) return assert(upstream.request("echo", msg.payload)) end`), 0o644)
	e, err := New(Config{Dir: dir, Logger: quiet, Upstream: &UpstreamConfig{Named: map[string]gateway.ClientConfig{
		"echo": {Addr: upAddr, Logger: quiet},
	}}})
	if err != nil {
		b.Fatal(err)
	}
	defer e.Close()
	for _, route := range []string{"", "forward"} {
		name := "LuaEcho"
		if route != "" {
			name = "ViaUpstream"
		}
		b.Run(name, func(b *testing.B) {
			_, addr := gatewaytest.Serve(b, "", gateway.Config{Handler: e})
			b.ResetTimer()
			res, err := bench.Run(context.Background(), bench.Config{
				Addr: addr, Conns: 16, Pipeline: 16, Size: 128, Route: route, Messages: max(b.N, 1000),
			})
			if err != nil || res.Errors != 0 {
				b.Fatalf("%v, %d errors: %s", err, res.Errors, res.FirstError)
			}
			b.ReportMetric(res.FramesPerSec, "frames/s")
			b.ReportMetric(1e6/res.FramesPerSec, "µs/frame")
		})
	}
}

// BenchmarkCall measures the Lua part of a message on one core: the echo
// and the transform handler of the benchmark report (decode the payload
// into Lua, run on_data, encode the reply), with the report's 128-byte
// payload. Allocations per message are what the garbage collector pays
// for.
func BenchmarkCall(b *testing.B) {
	handlers := map[string]string{
		"echo": `function on_data(msg) return msg.payload end`,
		"transform": `function on_data(msg)
  local p = msg.payload
  p.d = string.lower(string.upper(p.d))
  return json.decode(json.encode(p))
end`,
		"concat": `function on_data(msg)
  local p = msg.payload
  return "<" .. p.d .. ">" .. #p.d .. "/" .. msg.id
end`,
	}
	for _, name := range []string{"echo", "transform", "concat"} {
		b.Run(name, func(b *testing.B) {
			dir := b.TempDir()
			os.WriteFile(filepath.Join(dir, "default.lua"), []byte(handlers[name]), 0o644)
			e, err := New(Config{Dir: dir, Logger: slog.New(slog.DiscardHandler)})
			if err != nil {
				b.Fatal(err)
			}
			gen := e.current.Load()
			st, err := gen.get(0, time.Second)
			if err != nil {
				b.Fatal(err)
			}
			defer gen.put(0, st)
			msg := &protocol.Message{Type: protocol.TypeData, ID: "k1-1", Payload: []byte(`{"d":"` + strings.Repeat("x", 120) + `"}`)}
			b.ReportAllocs()
			for b.Loop() {
				if err := st.echoOnly(msg); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
