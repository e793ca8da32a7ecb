package scripting

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"time"

	lua "github.com/yuin/gopher-lua"
	"github.com/yuin/gopher-lua/parse"

	"github.com/secureagentmessaging/samgw/bench"
	"github.com/secureagentmessaging/samgw/gateway"
	"github.com/secureagentmessaging/samgw/internal/luabox"
	"github.com/secureagentmessaging/samgw/protocol"
)

// DefaultWaitTimeout bounds expect, request and ping when the script gives
// no timeout (before time scaling).
const DefaultWaitTimeout = 5 * time.Second

// maxUnclaimed bounds the messages kept for a later expect.
const maxUnclaimed = 1024

// ScenarioConfig describes a client scenario: a Lua file that drives one
// connection from top to bottom.
type ScenarioConfig struct {
	// Name is the file's name, used in error messages (file:line: message).
	Name string
	// Source is the Lua source.
	Source []byte
	// Client configures the connection; Addr at least. Its OnMessage,
	// OnConnect and OnDisconnect are taken by the scenario.
	Client gateway.ClientConfig
	// Args are the script's `args` table (from --arg k=v).
	Args map[string]string
	// TimeScale multiplies every sleep and timeout, and the client's
	// keep-alive timings; zero means 1.
	TimeScale float64
	// Out receives what log(...) prints, one line per call.
	Out io.Writer
	// Logger receives connection events; nil discards them.
	Logger *slog.Logger
}

// ScenarioResult is the outcome of one scenario run.
type ScenarioResult struct {
	// Err is why the scenario failed (file:line: message), or nil.
	Err error
	// Requests holds the round-trip time of every request and ping.
	Requests bench.Histogram
}

// ScenarioSummary is the outcome of several copies of a scenario.
type ScenarioSummary struct {
	Passed, Failed int
	// Errors are the first few failures, prefixed with the client's id.
	Errors []string
	// Requests merges the round trips of every copy.
	Requests bench.Histogram
}

// RunScenarios runs n copies of a scenario at once, each on its own
// connection and Lua state; `client.id` is 1..n. With n == 1 the output is
// the script's alone; with more each line is prefixed with [id]. A
// comma-separated Client.Addr spreads the copies over those servers.
func RunScenarios(ctx context.Context, cfg ScenarioConfig, n int) ScenarioSummary {
	proto, err := compileScenario(cfg)
	var sum ScenarioSummary
	if err != nil {
		sum.Failed = n
		sum.Errors = []string{err.Error()}
		return sum
	}
	out := &lineWriter{w: cfg.Out}
	results := make([]ScenarioResult, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			prefix := ""
			if n > 1 {
				prefix = fmt.Sprintf("[%d] ", i+1)
			}
			results[i] = runScenario(ctx, withAddr(cfg, i), proto, i+1, out, prefix)
		}()
	}
	wg.Wait()
	for i, r := range results {
		sum.Requests.Merge(&r.Requests)
		if r.Err == nil {
			sum.Passed++
			continue
		}
		sum.Failed++
		if len(sum.Errors) < 5 {
			msg := r.Err.Error()
			if n > 1 {
				msg = fmt.Sprintf("client %d: %s", i+1, msg)
			}
			sum.Errors = append(sum.Errors, msg)
		}
	}
	return sum
}

// RunScenario runs one copy of the scenario as client 1.
func RunScenario(ctx context.Context, cfg ScenarioConfig) ScenarioResult {
	proto, err := compileScenario(cfg)
	if err != nil {
		return ScenarioResult{Err: err}
	}
	return runScenario(ctx, withAddr(cfg, 0), proto, 1, &lineWriter{w: cfg.Out}, "")
}

// withAddr picks copy i's server when Client.Addr lists several,
// comma-separated: the copies are spread over them in turn, as over the
// nodes of a cluster.
func withAddr(cfg ScenarioConfig, i int) ScenarioConfig {
	addrs := strings.Split(cfg.Client.Addr, ",")
	cfg.Client.Addr = strings.TrimSpace(addrs[i%len(addrs)])
	return cfg
}

func compileScenario(cfg ScenarioConfig) (*lua.FunctionProto, error) {
	name := cmp.Or(cfg.Name, "scenario.lua")
	chunk, err := parse.Parse(strings.NewReader(string(cfg.Source)), name)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	proto, err := lua.Compile(chunk, name)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return proto, nil
}

// lineWriter serialises whole lines from several scenario copies.
type lineWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lineWriter) line(s string) {
	if l.w == nil {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	io.WriteString(l.w, s+"\n") //nolint:errcheck // output is best effort
}

// scenario is one running copy: a Lua state driving a client.
type scenario struct {
	ctx       context.Context
	L         *lua.LState
	conv      *converter
	client    *gateway.Client
	inbox     chan *protocol.Message // frames from the client's reader goroutine
	unclaimed []*protocol.Message    // received, not yet taken by expect
	handlers  map[protocol.Type][]*lua.LFunction
	hungUp    bool // disconnect() returned: no callback runs any more
	scale     float64
	out       *lineWriter
	prefix    string
	result    *ScenarioResult
}

func runScenario(ctx context.Context, cfg ScenarioConfig, proto *lua.FunctionProto, index int, out *lineWriter, prefix string) (res ScenarioResult) {
	name := cmp.Or(cfg.Name, "scenario.lua")
	scale := cfg.TimeScale
	if scale <= 0 {
		scale = 1
	}
	s := &scenario{
		ctx:      ctx,
		inbox:    make(chan *protocol.Message, 256),
		handlers: make(map[protocol.Type][]*lua.LFunction),
		scale:    scale,
		out:      out,
		prefix:   prefix,
		result:   &res,
	}
	ccfg := cfg.Client
	ccfg.KeepAliveInterval = s.scaled(cmp.Or(ccfg.KeepAliveInterval, gateway.DefaultKeepAliveInterval))
	ccfg.KeepAliveTimeout = s.scaled(cmp.Or(ccfg.KeepAliveTimeout, gateway.DefaultKeepAliveTimeout))
	ccfg.Logger = cmp.Or(cfg.Logger, slog.New(slog.DiscardHandler))
	finished := make(chan struct{}) // the script is done: stop delivering
	ccfg.OnMessage = func(m *protocol.Message) {
		select {
		case s.inbox <- m.Clone():
		case <-finished:
		case <-ctx.Done():
		}
	}
	ccfg.OnConnect, ccfg.OnDisconnect = nil, nil
	s.client = gateway.NewClient(ccfg)
	if err := s.client.Connect(ctx); err != nil {
		res.Err = fmt.Errorf("%s: %w", name, err)
		return res
	}
	defer s.client.Disconnect("scenario finished")
	defer close(finished) // before Disconnect, which waits for the reader

	s.L = luabox.NewState()
	defer s.L.Close()
	s.L.SetContext(ctx)
	s.conv = newConverter(s.L)
	registerCommon(s.L, s.conv)
	s.register(index, cfg.Args)
	luabox.Seal(s.L)

	fn := s.L.NewFunctionFromProto(proto)
	if err := s.L.CallByParam(lua.P{Fn: fn, NRet: 0, Protect: true}); err != nil {
		if ctx.Err() != nil {
			res.Err = fmt.Errorf("%s: interrupted", name)
		} else {
			res.Err = errors.New(luaErrorText(err))
		}
		return res
	}
	// Deliver what already arrived to the callbacks before hanging up.
	s.drain()
	return res
}

// scaled applies the time scale.
func (s *scenario) scaled(d time.Duration) time.Duration {
	return time.Duration(float64(d) * s.scale)
}

// msArg reads an optional duration in milliseconds at argument n, scaled.
func (s *scenario) msArg(n int, def time.Duration) time.Duration {
	v := s.L.Get(n)
	if v == lua.LNil {
		return s.scaled(def)
	}
	ms := s.L.CheckNumber(n)
	if ms < 0 {
		s.L.ArgError(n, "a duration must not be negative")
	}
	return s.scaled(time.Duration(float64(ms) * float64(time.Millisecond)))
}

func (s *scenario) register(index int, args map[string]string) {
	L := s.L
	fns := map[string]lua.LGFunction{
		"send":       s.luaSend,
		"request":    s.luaRequest,
		"ping":       s.luaPing,
		"expect":     s.luaExpect,
		"sleep":      s.luaSleep,
		"on":         s.luaOn,
		"disconnect": s.luaDisconnect,
		"connected":  s.luaConnected,
		"log":        s.luaLog,
	}
	for name, fn := range fns {
		L.SetGlobal(name, L.NewFunction(fn))
	}
	L.SetGlobal("print", L.NewFunction(s.luaLog))
	argt := L.NewTable()
	for k, v := range args {
		argt.RawSetString(k, lua.LString(v))
	}
	L.SetGlobal("args", argt)
	client := L.NewTable()
	client.RawSetString("id", lua.LNumber(index))
	L.SetGlobal("client", client)
}

// payloadRoute reads (payload[, route]) at arguments 1 and 2.
func (s *scenario) payloadRoute() ([]byte, string) {
	payload, err := s.conv.encode(nil, s.L.CheckAny(1))
	if err != nil {
		s.L.ArgError(1, err.Error())
	}
	route := ""
	if v, ok := s.L.Get(2).(lua.LString); ok {
		route = string(v)
	}
	return payload, route
}

// send(payload[, route]) → id
func (s *scenario) luaSend(L *lua.LState) int {
	payload, route := s.payloadRoute()
	id, err := s.client.SendMessage(protocol.Message{Type: protocol.TypeData, Route: route, Payload: payload})
	if err != nil {
		L.RaiseError("send: %s", err)
	}
	L.Push(lua.LString(id))
	return 1
}

// request(payload[, route][, timeout_ms]) → the reply's payload
func (s *scenario) luaRequest(L *lua.LState) int {
	payload, route := s.payloadRoute()
	timeoutArg := 3
	if _, ok := L.Get(2).(lua.LNumber); ok { // request(payload, timeout_ms)
		timeoutArg = 2
	}
	timeout := s.msArg(timeoutArg, DefaultWaitTimeout)
	start := time.Now()
	id, err := s.client.SendMessage(protocol.Message{Type: protocol.TypeData, Route: route, Payload: payload})
	if err != nil {
		L.RaiseError("request: %s", err)
	}
	reply := s.await("request", timeout, func(m *protocol.Message) bool {
		return m.ID == id && (m.Type == protocol.TypeData || m.Type == protocol.TypeError)
	})
	s.result.Requests.Record(time.Since(start))
	if reply.Type == protocol.TypeError {
		L.RaiseError("request: the server answered with error %s", reply.Payload)
	}
	L.Push(s.payloadValue(reply))
	return 1
}

// ping([timeout_ms]) → round trip in ms
func (s *scenario) luaPing(L *lua.LState) int {
	timeout := s.msArg(1, DefaultWaitTimeout)
	start := time.Now()
	id, err := s.client.Ping()
	if err != nil {
		L.RaiseError("ping: %s", err)
	}
	s.await("ping", timeout, func(m *protocol.Message) bool { return m.Type == protocol.TypePong && m.ID == id })
	rtt := time.Since(start)
	s.result.Requests.Record(rtt)
	L.Push(lua.LNumber(float64(rtt) / float64(time.Millisecond)))
	return 1
}

// expect(type[, timeout_ms]) → the next message of that type
func (s *scenario) luaExpect(L *lua.LState) int {
	typ := protocol.Type(L.CheckString(1))
	timeout := s.msArg(2, DefaultWaitTimeout)
	for i, m := range s.unclaimed {
		if m.Type == typ {
			s.unclaimed = append(s.unclaimed[:i], s.unclaimed[i+1:]...)
			L.Push(s.messageTable(m))
			return 1
		}
	}
	m := s.await("expect "+string(typ), timeout, func(m *protocol.Message) bool { return m.Type == typ })
	L.Push(s.messageTable(m))
	return 1
}

// sleep(ms): callbacks run meanwhile.
func (s *scenario) luaSleep(L *lua.LState) int {
	s.wait(s.msArg(1, 0), nil)
	return 0
}

// on(type, fn): fn(msg) runs for every message of that type.
func (s *scenario) luaOn(L *lua.LState) int {
	typ := protocol.Type(L.CheckString(1))
	fn := L.CheckFunction(2)
	s.handlers[typ] = append(s.handlers[typ], fn)
	return 0
}

// disconnect([reason])
//
// Callbacks run only while the script waits (sleep, expect, request, ping),
// as in the prototype's event loop: messages not yet delivered when the
// script calls disconnect() are dropped with the connection, so no callback
// runs between the line before disconnect() and the line after it.
func (s *scenario) luaDisconnect(L *lua.LState) int {
	s.hungUp = true
	s.client.Disconnect(L.OptString(1, "scenario disconnect")) //nolint:errcheck // Disconnect reports no failure worth raising
	return 0
}

// connected() → boolean
func (s *scenario) luaConnected(L *lua.LState) int {
	L.Push(lua.LBool(s.client.IsConnected()))
	return 1
}

// log(...) prints its arguments, separated by spaces, as one line.
func (s *scenario) luaLog(L *lua.LState) int {
	parts := make([]string, L.GetTop())
	for i := range parts {
		parts[i] = L.Get(i + 1).String()
	}
	s.out.line(s.prefix + strings.Join(parts, " "))
	return 0
}

// await waits up to timeout for a message that match claims, running
// callbacks for everything that arrives meanwhile; on timeout it raises
// "<what>: timed out after <ms>" at the script's current line.
func (s *scenario) await(what string, timeout time.Duration, match func(*protocol.Message) bool) *protocol.Message {
	m := s.wait(timeout, match)
	if m == nil {
		s.L.RaiseError("%s: timed out after %v", what, timeout.Round(time.Millisecond))
	}
	return m
}

// wait dispatches arriving messages until match claims one (returned) or
// timeout passes (nil). With a nil match it simply waits out the timeout.
func (s *scenario) wait(timeout time.Duration, match func(*protocol.Message) bool) *protocol.Message {
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	for {
		select {
		case m := <-s.inbox:
			if s.dispatch(m, match) {
				return m
			}
		case <-timer.C:
			return nil
		case <-s.ctx.Done():
			s.L.RaiseError("interrupted")
		}
	}
}

// drain dispatches what has already arrived, without waiting.
func (s *scenario) drain() {
	for {
		select {
		case m := <-s.inbox:
			s.dispatch(m, nil)
		default:
			return
		}
	}
}

// dispatch runs the callbacks for m and reports whether match claims it;
// an unclaimed message is kept for a later expect.
func (s *scenario) dispatch(m *protocol.Message, match func(*protocol.Message) bool) bool {
	if s.hungUp {
		return false
	}
	claimed := match != nil && match(m)
	if !claimed {
		if len(s.unclaimed) == maxUnclaimed {
			s.unclaimed = s.unclaimed[1:]
		}
		s.unclaimed = append(s.unclaimed, m)
	}
	for _, fn := range s.handlers[m.Type] {
		s.L.Push(fn)
		s.L.Push(s.messageTable(m))
		s.L.Call(1, 0)
	}
	return claimed
}

// messageTable is a received message as a Lua table.
func (s *scenario) messageTable(m *protocol.Message) *lua.LTable {
	t := s.L.CreateTable(0, 5)
	t.RawSetString("type", lua.LString(m.Type))
	if m.ID != "" {
		t.RawSetString("id", lua.LString(m.ID))
	}
	if m.Route != "" {
		t.RawSetString("route", lua.LString(m.Route))
	}
	if m.Timestamp != 0 {
		t.RawSetString("timestamp", lua.LNumber(m.Timestamp))
	}
	t.RawSetString("payload", s.payloadValue(m))
	return t
}

func (s *scenario) payloadValue(m *protocol.Message) lua.LValue {
	if m.Payload == nil {
		return lua.LNil
	}
	v, err := s.conv.decode(m.Payload)
	if err != nil {
		s.L.RaiseError("payload: %s", err)
	}
	return v
}
