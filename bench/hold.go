package bench

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/secureagentmessaging/samgw/internal/histogram"
	"github.com/secureagentmessaging/samgw/protocol"
)

// HoldConfig describes a density run: many long-lived, mostly quiet
// connections, the way agents and devices hold them.
type HoldConfig struct {
	// Addr is the server; default 127.0.0.1:4000. Addrs, when set, spreads
	// the connections over several servers (the nodes of a cluster), in
	// turn; the ping sample and the broadcasts use the first.
	Addr  string
	Addrs []string
	// Token, when set, authenticates every connection (an auth frame first).
	Token string
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
	// Broadcasts, with BroadcastRoute, measures fan-out: once the
	// connections are open, a frame {"broadcast": i} is sent that many
	// times (a second apart) to BroadcastRoute on one more connection,
	// whose handler is to broadcast it (e.g. gateway.broadcast(msg.payload,
	// route, conn.id)); each time is reported from the send until the last
	// held connection has it.
	Broadcasts     int
	BroadcastRoute string
	// Hello, when set, is the payload of a data frame to HelloRoute that
	// each held connection sends once it is open (a subscription, say);
	// the run waits for every answer before it measures.
	Hello      []byte
	HelloRoute string
}

// BroadcastResult is one broadcast of a density run.
type BroadcastResult struct {
	Reached int     `json:"reached"`
	LastMs  float64 `json:"last_ms"` // from the send until the last held connection had it
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
	// Broadcasts are the fan-out measurements, when asked for.
	Broadcasts []BroadcastResult `json:"broadcasts,omitempty"`
}

// Hold opens cfg.Conns connections, keeps each alive with keepalive frames
// for cfg.Duration while timing pings on one more, and closes them all.
func Hold(ctx context.Context, cfg HoldConfig) (HoldResult, error) {
	if len(cfg.Addrs) == 0 {
		cfg.Addrs = []string{cmp.Or(cfg.Addr, "127.0.0.1:4000")}
	}
	cfg.Addr = cfg.Addrs[0]
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
	var nLost atomic.Int64
	closing := make(chan struct{})
	fan := newFanOut(cfg.Broadcasts)
	fan.hellos = cfg.Hello != nil
	defer func() {
		close(closing)
		for _, c := range conns {
			c.Close()
		}
		lost.Wait()
	}()
	var auth []byte
	if cfg.Token != "" {
		auth = protocol.AppendFrame(nil, &protocol.Message{Type: protocol.TypeAuth, ID: "hold-auth", Payload: protocol.AppendAuthPayload(nil, cfg.Token)})
	}
	if cfg.Hello != nil {
		auth = protocol.AppendFrame(auth, &protocol.Message{Type: protocol.TypeData, ID: helloID, Route: cfg.HelloRoute, Payload: cfg.Hello})
	}
	for i := range cfg.Conns {
		c, err := dialFrom(ctx, cfg.Addrs[i%len(cfg.Addrs)], i%cfg.SourceAddrs)
		if err == nil && auth != nil {
			_, err = c.Write(auth)
		}
		if err != nil {
			return HoldResult{}, fmt.Errorf("bench: hold: after %d connections: %w", len(conns), err)
		}
		conns = append(conns, c)
		lost.Add(1)
		go func() { // reads what the server sends; notes broadcasts, and a connection the server ended
			defer lost.Done()
			fan.read(c)
			select {
			case <-closing:
			default:
				nLost.Add(1)
			}
		}()
	}
	if cfg.Hello != nil {
		if err := fan.waitHellos(ctx, len(conns)); err != nil {
			return HoldResult{}, err
		}
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
	var broadcasts []BroadcastResult
	var bErr error
	if cfg.Broadcasts > 0 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			broadcasts, bErr = fan.run(runCtx, cfg, len(conns))
		}()
	}
	pings, err := pingSample(runCtx, cfg.Addr, cfg.Token)
	wg.Wait()
	if err = cmp.Or(err, bErr); err != nil {
		return HoldResult{}, err
	}
	return HoldResult{Conns: len(conns), Lost: int(nLost.Load()), Pings: int(pings.Count()),
		PingP50: ms(pings.Quantile(0.5)), PingP99: ms(pings.Quantile(0.99)), PingMax: ms(pings.Max()),
		Broadcasts: broadcasts}, nil
}

// fanOut counts, for each broadcast, the held connections that got it and
// when the last one did.
type fanOut struct {
	got      []atomic.Int64 // connections that have broadcast i
	last     []atomic.Int64 // Unix nanoseconds the last of them got it
	hellos   bool           // count the answers to the hello frames
	answered atomic.Int64   // hello frames answered
}

// helloID is the id of the hello frames.
const helloID = "hold-hello"

// waitHellos waits up to 30 s until n hello frames were answered.
func (f *fanOut) waitHellos(ctx context.Context, n int) error {
	deadline := time.Now().Add(30 * time.Second)
	poll := time.NewTicker(time.Millisecond)
	defer poll.Stop()
	for f.answered.Load() < int64(n) {
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("bench: hold: %d of %d hello frames answered", f.answered.Load(), n)
		}
		<-poll.C
	}
	return nil
}

func newFanOut(n int) *fanOut {
	return &fanOut{got: make([]atomic.Int64, n), last: make([]atomic.Int64, n)}
}

// read reads a held connection until it ends, noting broadcasts.
func (f *fanOut) read(c net.Conn) {
	if len(f.got) == 0 && !f.hellos {
		io.Copy(io.Discard, c) //nolint:errcheck // ends with the connection
		return
	}
	r := protocol.NewReader(c, protocol.Limits{})
	var m protocol.Message
	for {
		frame, err := r.ReadFrame()
		if err != nil {
			return
		}
		if protocol.Decode(frame, &m, protocol.Limits{}) != nil {
			continue
		}
		if m.ID == helloID && (m.Type == protocol.TypeData || m.Type == protocol.TypeError) {
			f.answered.Add(1)
			continue
		}
		if m.Type != protocol.TypeData {
			continue
		}
		var p struct {
			Broadcast *int `json:"broadcast"`
		}
		if json.Unmarshal(m.Payload, &p) != nil || p.Broadcast == nil || *p.Broadcast < 0 || *p.Broadcast >= len(f.got) {
			continue
		}
		i := *p.Broadcast
		now := time.Now().UnixNano()
		for last := f.last[i].Load(); now > last && !f.last[i].CompareAndSwap(last, now); last = f.last[i].Load() {
		}
		f.got[i].Add(1)
	}
}

// run sends the broadcasts a second apart and waits (up to 10 s each) for
// every held connection to have each.
func (f *fanOut) run(ctx context.Context, cfg HoldConfig, held int) ([]BroadcastResult, error) {
	c, err := dialFrom(ctx, cfg.Addr, 0)
	if err != nil {
		return nil, fmt.Errorf("bench: hold: broadcast connection: %w", err)
	}
	defer c.Close()
	go io.Copy(io.Discard, c) //nolint:errcheck // replies are not needed; ends with the connection
	if cfg.Token != "" {
		if _, err := c.Write(protocol.AppendFrame(nil, &protocol.Message{Type: protocol.TypeAuth, ID: "b-auth", Payload: protocol.AppendAuthPayload(nil, cfg.Token)})); err != nil {
			return nil, err
		}
	}
	results := make([]BroadcastResult, 0, len(f.got))
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	poll := time.NewTicker(time.Millisecond)
	defer poll.Stop()
	for i := range f.got {
		select {
		case <-ctx.Done():
			return results, nil
		case <-tick.C:
		}
		start := time.Now()
		payload := []byte(`{"broadcast":` + strconv.Itoa(i) + `}`)
		if _, err := c.Write(protocol.AppendFrame(nil, &protocol.Message{Type: protocol.TypeData, ID: "b-" + strconv.Itoa(i), Route: cfg.BroadcastRoute, Payload: payload})); err != nil {
			return results, fmt.Errorf("bench: hold: broadcast: %w", err)
		}
		deadline := start.Add(10 * time.Second)
		for f.got[i].Load() < int64(held) && time.Now().Before(deadline) && ctx.Err() == nil {
			<-poll.C
		}
		r := BroadcastResult{Reached: int(f.got[i].Load())}
		if last := f.last[i].Load(); last > 0 {
			r.LastMs = ms(time.Unix(0, last).Sub(start))
		}
		results = append(results, r)
	}
	return results, nil
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
func pingSample(ctx context.Context, addr, token string) (*histogram.Histogram, error) {
	h := &histogram.Histogram{}
	c, err := dialFrom(ctx, addr, 0)
	if err != nil {
		return nil, fmt.Errorf("bench: hold: ping connection: %w", err)
	}
	defer c.Close()
	if token != "" {
		if _, err := c.Write(protocol.AppendFrame(nil, &protocol.Message{Type: protocol.TypeAuth, ID: "p-auth", Payload: protocol.AppendAuthPayload(nil, token)})); err != nil {
			return nil, fmt.Errorf("bench: hold: ping connection: %w", err)
		}
	}
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
