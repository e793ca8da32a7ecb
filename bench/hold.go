package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/secureagentmessaging/samgw/internal/histogram"
	"github.com/secureagentmessaging/samgw/protocol"
)

// HoldConfig describes a density run: many long-lived, mostly quiet
// connections, the way agents and devices hold them.
type HoldConfig struct {
	// Addr is the server; default 127.0.0.1:4000.
	Addr string
	// Conns is how many connections to hold.
	Conns int
	// Duration is how long to hold them once all are open.
	Duration time.Duration
	// KeepAlive is how often each connection sends a keepalive frame (spread
	// evenly, so the server sees a steady trickle); default 10 s.
	KeepAlive time.Duration
	// SourceAddrs spreads the connections over 127.0.0.1 … 127.0.0.N as
	// source addresses, so their number is not bounded by one address's
	// ephemeral ports; default 1 + Conns/20000.
	SourceAddrs int
	// Opened, if set, is called once every connection is open.
	Opened func()
}

// HoldResult is what a density run saw.
type HoldResult struct {
	Conns int `json:"conns"`
	// Lost counts held connections that ended before the run did.
	Lost int `json:"lost"`
	// Pings is the round trip of a ping sent every 100 ms on one more
	// connection while the others were held.
	Pings   int     `json:"pings"`
	PingP50 float64 `json:"ping_p50_ms"`
	PingP99 float64 `json:"ping_p99_ms"`
	PingMax float64 `json:"ping_max_ms"`
}

// Hold opens cfg.Conns connections, keeps each alive with keepalive frames
// for cfg.Duration while timing pings on one more, and closes them all.
func Hold(ctx context.Context, cfg HoldConfig) (HoldResult, error) {
	if cfg.Addr == "" {
		cfg.Addr = "127.0.0.1:4000"
	}
	if cfg.KeepAlive <= 0 {
		cfg.KeepAlive = 10 * time.Second
	}
	if cfg.SourceAddrs <= 0 {
		cfg.SourceAddrs = 1 + cfg.Conns/20000
	}
	if cfg.Conns <= 0 || cfg.Duration <= 0 {
		return HoldResult{}, errors.New("bench: hold needs Conns and Duration")
	}
	conns := make([]net.Conn, 0, cfg.Conns)
	var lost sync.WaitGroup
	var mu sync.Mutex
	nLost := 0
	defer func() {
		for _, c := range conns {
			c.Close()
		}
		lost.Wait()
	}()
	for i := range cfg.Conns {
		c, err := dialFrom(ctx, cfg.Addr, i%cfg.SourceAddrs)
		if err != nil {
			return HoldResult{}, fmt.Errorf("bench: hold: after %d connections: %w", len(conns), err)
		}
		conns = append(conns, c)
		lost.Add(1)
		go func() { // discards what the server sends; notes a connection the server ended
			defer lost.Done()
			io.Copy(io.Discard, c) //nolint:errcheck // ends with the connection
			if ctx.Err() == nil {
				mu.Lock()
				nLost++
				mu.Unlock()
			}
		}()
	}
	if cfg.Opened != nil {
		cfg.Opened()
	}
	runCtx, cancel := context.WithTimeout(ctx, cfg.Duration)
	defer cancel()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { // keepalives, spread evenly over the interval
		defer wg.Done()
		keepAlives(runCtx, conns, cfg.KeepAlive)
	}()
	pings, err := pingSample(runCtx, cfg.Addr)
	wg.Wait()
	if err != nil {
		return HoldResult{}, err
	}
	res := HoldResult{Conns: len(conns), Pings: int(pings.Count()),
		PingP50: ms(pings.Quantile(0.5)), PingP99: ms(pings.Quantile(0.99)), PingMax: ms(pings.Max())}
	// Connections that ended because we are closing them are not lost.
	mu.Lock()
	res.Lost = nLost
	mu.Unlock()
	return res, nil
}

// dialFrom dials addr from 127.0.0.(1+source).
func dialFrom(ctx context.Context, addr string, source int) (net.Conn, error) {
	d := net.Dialer{Timeout: 5 * time.Second}
	if source > 0 {
		d.LocalAddr = &net.TCPAddr{IP: net.IPv4(127, 0, 0, byte(1+source%250))}
	}
	return d.DialContext(ctx, "tcp", addr)
}

// keepAlives writes a keepalive on every connection once per interval, a
// few connections at a time.
func keepAlives(ctx context.Context, conns []net.Conn, interval time.Duration) {
	const step = 20 * time.Millisecond
	perStep := max(1, len(conns)*int(step)/int(interval))
	frame := protocol.AppendFrame(nil, &protocol.Message{Type: protocol.TypeKeepAlive, Payload: []byte(`{"message":"keepalive"}`)})
	tick := time.NewTicker(step)
	defer tick.Stop()
	next := 0
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		for range perStep {
			conns[next].SetWriteDeadline(time.Now().Add(time.Second)) //nolint:errcheck // Write reports it
			conns[next].Write(frame)                                  //nolint:errcheck // a lost connection is counted by its reader
			next = (next + 1) % len(conns)
		}
	}
}

// pingSample pings every 100 ms on a connection of its own until ctx ends.
func pingSample(ctx context.Context, addr string) (*histogram.Histogram, error) {
	h := &histogram.Histogram{}
	c, err := dialFrom(ctx, addr, 0)
	if err != nil {
		return nil, fmt.Errorf("bench: hold: ping connection: %w", err)
	}
	defer c.Close()
	r := protocol.NewReader(c, protocol.Limits{})
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	var m protocol.Message
	for i := 0; ; i++ {
		select {
		case <-ctx.Done():
			return h, nil
		case <-tick.C:
		}
		id := "hold-ping-" + strconv.Itoa(i)
		start := time.Now()
		c.SetDeadline(start.Add(5 * time.Second)) //nolint:errcheck // the read reports it
		if _, err := c.Write(protocol.AppendFrame(nil, &protocol.Message{Type: protocol.TypePing, ID: id})); err != nil {
			return nil, fmt.Errorf("bench: hold: ping: %w", err)
		}
		for {
			frame, err := r.ReadFrame()
			if err != nil {
				return nil, fmt.Errorf("bench: hold: ping: %w", err)
			}
			if protocol.Decode(frame, &m, protocol.Limits{}) == nil && m.Type == protocol.TypePong && m.ID == id {
				break
			}
		}
		h.Record(time.Since(start))
	}
}
