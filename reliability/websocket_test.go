package reliability

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// BenchmarkHeldConnections: what a quiet connection costs the server, in
// resident memory, held over TCP, over WebSocket, and over WebSocket with
// permessage-deflate negotiated: 5,000 of each, authenticated by nothing,
// each answered once (so it went through the whole path), then held. The
// server is a samgw process of its own; reported as KiB per connection.
func BenchmarkHeldConnections(b *testing.B) {
	const n = 5000
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err == nil && lim.Cur < 3*n+1000 {
		lim.Cur = min(lim.Max, 4*n)
		syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim) //nolint:errcheck // checked by the dials
	}
	bin := buildSamgw(b)
	for _, kind := range []string{"tcp", "ws", "ws-deflate"} {
		b.Run(kind, func(b *testing.B) {
			for range b.N {
				p := startProcess(b, bin, "--http-listen", "127.0.0.1:0", "--max-conns", "20000", "--keepalive-interval", "10s")
				addr := p.addr
				if kind != "tcp" {
					addr = p.httpAddr
				}
				before := p.rss()
				var closers []func()
				for i := range n {
					closers = append(closers, holdOne(b, kind, addr, i))
				}
				held := p.rss()
				b.ReportMetric(float64(held-before)/n/1024, "KiB/conn")
				for _, c := range closers {
					c()
				}
				p.stop()
			}
		})
	}
}

// holdOne opens one connection of kind, gets an answer on it, and returns
// what closes it.
func holdOne(b *testing.B, kind, addr string, i int) func() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	frame := fmt.Sprintf(`{"type":"data","id":"%d","payload":{"text":"hello"}}`, i)
	if kind == "tcp" {
		nc, err := net.Dial("tcp", addr)
		if err != nil {
			b.Fatal(err)
		}
		fmt.Fprintln(nc, frame)
		if _, err := bufio.NewReader(nc).ReadSlice('\n'); err != nil {
			b.Fatal(err)
		}
		return func() { nc.Close() }
	}
	mode := websocket.CompressionDisabled
	if kind == "ws-deflate" {
		mode = websocket.CompressionNoContextTakeover
	}
	c, _, err := websocket.Dial(ctx, "ws://"+addr+"/v1/ws", &websocket.DialOptions{CompressionMode: mode})
	if err != nil {
		b.Fatal(err)
	}
	if err := c.Write(ctx, websocket.MessageText, []byte(frame)); err != nil {
		b.Fatal(err)
	}
	if _, _, err := c.Read(ctx); err != nil {
		b.Fatal(err)
	}
	return func() { c.CloseNow() }
}
