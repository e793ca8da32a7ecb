package scenario

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/secureagentmessaging/samgw/gateway"
	"github.com/secureagentmessaging/samgw/internal/luabox"
	"github.com/secureagentmessaging/samgw/protocol"
	lua "github.com/yuin/gopher-lua"
)

// scenario is one running copy: a Lua state driving a client.
type scenario struct {
	ctx       context.Context
	L         *lua.LState
	conv      *luabox.Converter
	client    *gateway.Client
	inbox     chan *protocol.Message // frames from the client's reader goroutine
	unclaimed []*protocol.Message    // received, not yet taken by expect
	handlers  map[protocol.Type][]*lua.LFunction
	hungUp    bool // disconnect() returned: no callback runs any more
	scale     float64
	out       *lineWriter
	prefix    string
	result    *Result
}

func runScenario(ctx context.Context, cfg Config, proto *lua.FunctionProto, index int, out *lineWriter, prefix string) (res Result) {
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
	// A mailbox message is acked when the script takes it (see taken), not
	// when it is buffered for the script: one the script never took comes
	// again, and one it took is acked before a disconnect it then makes.
	ccfg.ManualAck = true
	client, err := gateway.NewClient(ccfg)
	if err != nil {
		res.Err = fmt.Errorf("%s: %w", name, err)
		return res
	}
	s.client = client
	if err := s.client.Connect(ctx); err != nil {
		res.Err = fmt.Errorf("%s: %w", name, err)
		return res
	}
	defer s.client.Disconnect("scenario finished")
	defer close(finished) // before Disconnect, which waits for the reader

	s.L = luabox.NewState()
	defer s.L.Close()
	s.L.SetContext(ctx)
	s.conv = luabox.NewConverter(s.L)
	luabox.OpenJSON(s.L, s.conv)
	luabox.OpenHelpers(s.L)
	s.register(index, cfg.Args)
	luabox.Seal(s.L)

	fn := s.L.NewFunctionFromProto(proto)
	if err := s.L.CallByParam(lua.P{Fn: fn, NRet: 0, Protect: true}); err != nil {
		if ctx.Err() != nil {
			res.Err = fmt.Errorf("%s: interrupted", name)
		} else {
			res.Err = errors.New(luabox.ErrorText(err))
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
	payload, err := s.conv.Encode(nil, s.L.CheckAny(1))
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
	reply := s.await("request", timeout, true, func(m *protocol.Message) bool {
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
	s.await("ping", timeout, true, func(m *protocol.Message) bool { return m.Type == protocol.TypePong && m.ID == id })
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
	m := s.await("expect "+string(typ), timeout, false, func(m *protocol.Message) bool { return m.Type == typ })
	L.Push(s.messageTable(m))
	return 1
}

// sleep(ms): callbacks run meanwhile.
func (s *scenario) luaSleep(L *lua.LState) int {
	s.wait(s.msArg(1, 0), false, nil)
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
//
// With exclusive (request and ping), the message match claims is the
// caller's alone: it reaches no on() callback. A reply belongs to the step
// that asked for it; everything else (pushes, replies to send) goes to the
// callbacks.
func (s *scenario) await(what string, timeout time.Duration, exclusive bool, match func(*protocol.Message) bool) *protocol.Message {
	m := s.wait(timeout, exclusive, match)
	if m == nil {
		s.L.RaiseError("%s: timed out after %v", what, timeout.Round(time.Millisecond))
	}
	return m
}

// wait dispatches arriving messages until match claims one (returned) or
// timeout passes (nil). With a nil match it simply waits out the timeout.
func (s *scenario) wait(timeout time.Duration, exclusive bool, match func(*protocol.Message) bool) *protocol.Message {
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	for {
		select {
		case m := <-s.inbox:
			s.taken(m)
			if s.dispatch(m, exclusive, match) {
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
			s.taken(m)
			s.dispatch(m, false, nil)
		default:
			return
		}
	}
}

// taken acks a mailbox message the script takes (acks are cumulative and
// messages come in seq order).
func (s *scenario) taken(m *protocol.Message) {
	if m.Seq != 0 {
		s.client.Ack(m.Seq) //nolint:errcheck // not connected: it comes again
	}
}

// dispatch runs the callbacks for m and reports whether match claims it;
// an unclaimed message is kept for a later expect.
func (s *scenario) dispatch(m *protocol.Message, exclusive bool, match func(*protocol.Message) bool) bool {
	if s.hungUp {
		return false
	}
	if m.Type == protocol.TypeError {
		// The server refusing the connection itself ends the scenario: every
		// later step would only time out, reconnect and be refused again.
		if pe := protocol.ParseError(m.Payload); pe.Code == protocol.CodeUnauthorized || pe.Code == protocol.CodeTLSRequired {
			s.result.Refused = pe
			s.L.RaiseError("the server refused the connection: %s: %s", pe.Code, pe.Message)
		}
	}
	claimed := match != nil && match(m)
	if !claimed {
		if len(s.unclaimed) == maxUnclaimed {
			s.unclaimed = s.unclaimed[1:]
		}
		s.unclaimed = append(s.unclaimed, m)
	}
	if claimed && exclusive {
		return true
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
	if m.Seq != 0 {
		t.RawSetString("seq", lua.LNumber(m.Seq)) // a mailbox message (samgw client --resume)
	}
	t.RawSetString("payload", s.payloadValue(m))
	return t
}

func (s *scenario) payloadValue(m *protocol.Message) lua.LValue {
	if m.Payload == nil {
		return lua.LNil
	}
	v, err := s.conv.Decode(m.Payload)
	if err != nil {
		s.L.RaiseError("payload: %s", err)
	}
	return v
}
