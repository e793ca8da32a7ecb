package scripting

import (
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	lua "github.com/yuin/gopher-lua"

	"github.com/secureagentmessaging/samgw/access"
	"github.com/secureagentmessaging/samgw/delivery"
	"github.com/secureagentmessaging/samgw/protocol"
)

// harness is what one test of `samgw test` runs against: made-up
// connections and a gateway that records what the handlers do to them, an
// in-memory store, a clock moved by the test, and stubbed answers for
// http, upstream and nats. Everything runs on the test's own Lua state, on
// one goroutine.
type harness struct {
	gen     *generation // the test's copy of the scripts' generation
	st      *luaState
	clock   *fakeClock
	store   *Store
	tests   []declaredTest
	loading bool

	conns     []*fakeConn
	outbox    []outboxEntry
	stubs     map[string]map[string]lua.LValue // "http" / "upstream" / "nats" → key → reply or function
	timerErr  error
	nextID    int
	delivered int            // gateway.deliver calls so far: the last seq returned
	pushed    int            // queue.push calls so far
	queued    map[string]int // jobs pushed, by queue
	history   testHistory
}

type declaredTest struct {
	name string
	fn   *lua.LFunction
}

// fakeConn is a connection a test made with new_conn.
type fakeConn struct {
	id, remote, identity string
	transport            string
	data                 connData
	pushes               []fakePush
	closed               string // the close reason, once closed
	topics               map[string]bool
	queues               map[string]bool // joined
	ud                   *lua.LUserData
	roles                []string
	grant                *access.Grant // from new_conn{grants = …}; nil: everything allowed
}

func (c *fakeConn) ID() string         { return c.id }
func (c *fakeConn) RemoteAddr() string { return c.remote }
func (c *fakeConn) Transport() string  { return c.transport }
func (c *fakeConn) Identity() string   { return c.identity }
func (c *fakeConn) Roles() []string    { return c.roles }

func (c *fakeConn) Can(kind access.Kind, target string) bool {
	return c.grant == nil || c.grant.Allows(kind, target)
}

// fakeGrant compiles new_conn's grants = {routes = {…}, publish = {…},
// subscribe = {…}, send_to = {identity, …}} as one role.
func fakeGrant(L *lua.LState, t *lua.LTable) *access.Grant {
	list := func(key string) []string {
		var out []string
		v, ok := t.RawGetString(key).(*lua.LTable)
		if !ok {
			return nil
		}
		for i := 1; i <= v.Len(); i++ {
			out = append(out, lua.LVAsString(v.RawGetInt(i)))
		}
		return out
	}
	role := access.Role{Routes: list("routes"), Publish: list("publish"), Subscribe: list("subscribe"), SendTo: list("send_to")}
	ids := map[string][]string{"": {"test"}}
	for _, name := range role.SendTo {
		if _, ok := ids[name]; !ok {
			ids[name] = nil
		}
	}
	p, err := access.Compile(map[string]access.Role{"test": role}, ids)
	if err != nil {
		L.RaiseError("new_conn: grants: %s", err)
	}
	return p.Grant("")
}

type fakePush struct {
	payload []byte
	route   string
	pub     *delivery.Entry // a publication of a topic with history
}

// outboxEntry is one thing a handler did through the gateway or nats
// modules.
type outboxEntry struct {
	action                       string
	to, identity, topic, subject string
	route, except, reason, id    string
	name, kind                   string // a metric's
	queue                        string
	value                        float64 // a metric's
	payload                      []byte
}

func newHarness() *harness {
	clock := &fakeClock{base: time.Now()}
	store := NewStore(0)
	store.nowFunc = clock.Now
	return &harness{clock: clock, store: store, stubs: map[string]map[string]lua.LValue{"http": {}, "upstream": {}, "nats": {}}}
}

// state makes the test's Lua state: gen's files, loaded as serve loads
// them, with this harness's doubles.
func (h *harness) state(gen *generation) (*luaState, error) {
	g := &generation{engine: gen.engine, number: gen.number, routes: gen.routes, libs: gen.libs, config: gen.config, pool: newStatePool(1)}
	g.timers = newTimerSet(g, h.clock, gen.engine.maxTimers, gen.engine.maxConnTimers)
	g.timers.inline = true
	g.timers.failed = func(t *luaTimer, err error) {
		if h.timerErr == nil {
			h.timerErr = fmt.Errorf("timer made at %s failed: %w", t.where, err)
		}
	}
	h.gen = g
	st, err := newStateWith(g, h)
	if err != nil {
		return nil, err
	}
	h.st = st
	return st, nil
}

// timerFailure is the first failure of a timer the test's clock ran.
func (h *harness) timerFailure() error { return h.timerErr }

// register installs the test API and replaces the modules that reach
// outside the gateway process with doubles; called before the state's
// globals are sealed.
func (h *harness) register(st *luaState) {
	L := st.L
	st.kv = localKV{h.store}
	L.SetGlobal("gateway", st.module(map[string]lua.LGFunction{
		"send": h.gwSend, "send_to": h.gwSendTo, "broadcast": h.gwBroadcast, "connections": h.gwConnections,
		"close": h.gwClose, "subscribe": h.gwSubscribe, "unsubscribe": h.gwUnsubscribe, "publish": h.gwPublish,
		"deliver": h.gwDeliver,
	}))
	L.SetGlobal("metrics", st.metricsModule(func(kind, name string, v float64) error {
		h.outbox = append(h.outbox, outboxEntry{action: "metric", name: name, kind: kind, value: v})
		return nil
	}))
	L.SetGlobal("http", st.httpModule(h.httpCall))
	L.SetGlobal("upstream", st.module(map[string]lua.LGFunction{"request": h.upstreamRequest, "all": h.upstreamAll}))
	L.SetGlobal("nats", st.module(map[string]lua.LGFunction{"publish": h.natsPublish, "request": h.natsRequest}))
	h.registerQueue(st)
	L.SetGlobal("job_event", L.NewFunction(h.jobEvent))
	L.SetGlobal("topic_history", L.NewFunction(h.topicHistory))

	L.SetGlobal("test", L.NewFunction(h.declare))
	L.SetGlobal("new_conn", L.NewFunction(h.newConn))
	L.SetGlobal("call", L.NewFunction(h.call))
	L.SetGlobal("connect", L.NewFunction(h.connect))
	L.SetGlobal("disconnect", L.NewFunction(h.disconnect))
	L.SetGlobal("start", L.NewFunction(h.start))
	L.SetGlobal("pushes", L.NewFunction(h.pushesOf))
	L.SetGlobal("closed", L.NewFunction(h.closedReason))
	L.SetGlobal("conn_state", L.NewFunction(h.connStateOf))
	L.SetGlobal("outbox", L.NewFunction(h.outboxList))
	L.SetGlobal("stub", st.module(map[string]lua.LGFunction{
		"http": h.stub("http"), "upstream": h.stub("upstream"), "nats": h.stub("nats"),
	}))
	L.SetGlobal("clock", st.module(map[string]lua.LGFunction{"advance": h.advance, "now": h.now}))
	// now() follows the test's clock, as timers and TTLs do, so a handler
	// that compares now() with a stored time sees clock.advance.
	L.SetGlobal("now", L.NewFunction(func(L *lua.LState) int {
		L.Push(lua.LNumber(h.clock.base.Add(h.clock.elapsed).UnixMilli()))
		return 1
	}))
	L.SetGlobal("assert_eq", L.NewFunction(h.assertEq))
	L.SetGlobal("assert_error", L.NewFunction(h.assertError))
}

// test(name, fn) declares a test; only while the file loads.
func (h *harness) declare(L *lua.LState) int {
	name, fn := L.CheckString(1), L.CheckFunction(2)
	if !h.loading {
		L.RaiseError("test: declare tests at the top level of the file")
	}
	for _, t := range h.tests {
		if t.name == name {
			L.RaiseError("test: %q is declared twice", name)
		}
	}
	h.tests = append(h.tests, declaredTest{name: name, fn: fn})
	return 0
}

// new_conn{id=, identity=, remote=, roles=, grants=} → a made-up
// connection (ids c1, c2, … by default); conn.can answers from grants
// (everything without).
func (h *harness) newConn(L *lua.LState) int {
	L.Push(h.makeConn(L.OptTable(1, L.NewTable())).ud)
	return 1
}

func (h *harness) makeConn(opts *lua.LTable) *fakeConn {
	L := h.st.L
	h.nextID++
	c := &fakeConn{id: "c" + strconv.Itoa(h.nextID), remote: "127.0.0.1:" + strconv.Itoa(40000+h.nextID), transport: "tcp", topics: map[string]bool{}}
	if s, ok := opts.RawGetString("id").(lua.LString); ok {
		c.id = string(s)
	}
	if s, ok := opts.RawGetString("identity").(lua.LString); ok {
		c.identity = string(s)
	}
	if s, ok := opts.RawGetString("remote").(lua.LString); ok {
		c.remote = string(s)
	}
	if s, ok := opts.RawGetString("transport").(lua.LString); ok {
		c.transport = string(s)
	}
	if t, ok := opts.RawGetString("roles").(*lua.LTable); ok {
		for i := 1; i <= t.Len(); i++ {
			c.roles = append(c.roles, lua.LVAsString(t.RawGetInt(i)))
		}
	}
	if t, ok := opts.RawGetString("grants").(*lua.LTable); ok {
		c.grant = fakeGrant(L, t)
	}
	if h.conn(c.id) != nil {
		L.RaiseError("new_conn: a connection %q exists already", c.id)
	}
	c.ud = L.NewUserData()
	c.ud.Value = c
	c.ud.Metatable = h.st.connMeta
	h.conns = append(h.conns, c)
	return c
}

func (h *harness) conn(id string) *fakeConn {
	for _, c := range h.conns {
		if c.id == id && c.closed == "" {
			return c
		}
	}
	return nil
}

// connArg reads a connection made by new_conn at argument n; by default
// (absent) one made on the spot.
func (h *harness) connArg(n int, orNew bool) *fakeConn {
	L := h.st.L
	if L.Get(n) == lua.LNil && orNew {
		return h.makeConn(L.NewTable())
	}
	c, ok := L.CheckUserData(n).Value.(*fakeConn)
	if !ok {
		L.ArgError(n, "a connection from new_conn expected")
	}
	return c
}

// inCall runs fn as a handler call for c would run: conn.state loaded, and
// saved after; message: it handles c's message (on_data), so the gateway
// doubles check c's grants. A handler error is raised again as it is.
func (h *harness) inCall(c *fakeConn, script string, fn *lua.LFunction, message bool, nret int, args ...lua.LValue) []lua.LValue {
	st, L := h.st, h.st.L
	saved := st.call
	st.call = callInfo{peer: c, script: script, data: &c.data, message: message}
	err := L.CallByParam(lua.P{Fn: fn, NRet: nret, Protect: true}, args...)
	var rets []lua.LValue
	if err == nil {
		for i := nret; i > 0; i-- {
			rets = append(rets, L.Get(-i))
		}
		L.Pop(nret)
		if serr := st.saveState(); serr != nil {
			err = serr
		}
	}
	refused := st.call.upstream == protocol.CodeForbidden
	st.call = saved
	if err != nil {
		var text string
		se, ok := err.(*scriptError)
		if !ok {
			var ae *lua.ApiError
			if errors.As(err, &ae) {
				if _, isTable := ae.Object.(*lua.LTable); isTable {
					se, ok = scriptErrorOf(err), true // error{code = …}: as the server reads it
				}
			}
		}
		if ok {
			text = se.text
			if se.code != "" {
				text = string(se.code) + ": " + se.text // what the client's error frame says
			}
		} else {
			text = errorTextOf(err)
			if refused {
				text = "forbidden: " + text // a role refused a call, and the script let it escape
			}
		}
		L.Error(lua.LString(text), 0)
	}
	return rets
}

// call(route, payload[, conn]) → what the route's on_data returned, as the
// client would get it (through JSON); a handler error is raised again.
func (h *harness) call(L *lua.LState) int {
	route := L.CheckString(1)
	funcs := h.st.routes[route]
	if funcs == nil {
		L.ArgError(1, fmt.Sprintf("no handler for route %q (routes: %s)", route, strings.Join(h.gen.routeNames(), ", ")))
	}
	payload := h.roundTrip(L.Get(2), "payload")
	c := h.connArg(3, true)
	h.nextID++
	m := h.st.newMsg(&protocol.Message{ID: "t" + strconv.Itoa(h.nextID), Route: route, Timestamp: h.clock.Now().UnixMilli()}, payload)
	ret := h.inCall(c, funcs.script, funcs.onData, true, 1, m, c.ud)[0]
	if ret == lua.LNil {
		L.Push(lua.LNil)
		return 1
	}
	L.Push(h.roundTrip(ret, "on_data returned a value that"))
	return 1
}

// roundTrip passes v through JSON, as it would cross the wire.
func (h *harness) roundTrip(v lua.LValue, what string) lua.LValue {
	if v == lua.LNil {
		return lua.LNil
	}
	out, err := h.st.conv.Encode(nil, v)
	if err != nil {
		h.st.L.RaiseError("%s is not JSON: %s", what, err)
	}
	back, err := h.st.conv.Decode(out)
	if err != nil {
		h.st.L.RaiseError("%s: %s", what, err)
	}
	return back
}

// connect(conn) → ok[, reason]: default.lua's on_connect, as the gateway
// runs it for a new connection.
func (h *harness) connect(L *lua.LState) int {
	c := h.connArg(1, false)
	funcs := h.st.routes[defaultRoute]
	if funcs == nil || funcs.onConnect == nil {
		L.Push(lua.LTrue)
		return 1
	}
	rets := h.inCall(c, funcs.script, funcs.onConnect, false, 2, c.ud)
	if rets[0] == lua.LFalse {
		reason := lua.LString("rejected by on_connect")
		if s, ok := rets[1].(lua.LString); ok && s != "" {
			reason = s
		}
		c.closed = string(reason)
		L.Push(lua.LFalse)
		L.Push(reason)
		return 2
	}
	L.Push(lua.LTrue)
	return 1
}

// disconnect(conn[, reason]): the connection goes; default.lua's on_close
// runs and its subscriptions end.
func (h *harness) disconnect(L *lua.LState) int {
	c := h.connArg(1, false)
	reason := L.OptString(2, "client disconnected")
	if c.closed == "" {
		c.closed = reason
	}
	clear(c.topics)
	if funcs := h.st.routes[defaultRoute]; funcs != nil && funcs.onClose != nil {
		h.inCall(c, funcs.script, funcs.onClose, false, 0, c.ud, lua.LString(reason))
	}
	return 0
}

// start(): default.lua's on_start, as the gateway runs it when it starts
// serving.
func (h *harness) start(L *lua.LState) int {
	funcs := h.st.routes[defaultRoute]
	if funcs == nil || funcs.onStart == nil {
		L.RaiseError("start: default.lua defines no on_start")
	}
	if err := h.st.runNested(funcs.onStart); err != nil {
		L.Error(lua.LString(err.Error()), 0)
	}
	return 0
}

// pushes(conn) → the frames pushed to conn so far: {payload=, route=}…,
// and topic=, offset=, epoch= for a publication of a topic with history
func (h *harness) pushesOf(L *lua.LState) int {
	c := h.connArg(1, false)
	t := L.CreateTable(len(c.pushes), 0)
	for _, p := range c.pushes {
		e := L.CreateTable(0, 2)
		e.RawSetString("payload", h.decode(p.payload))
		if p.route != "" {
			e.RawSetString("route", lua.LString(p.route))
		}
		if p.pub != nil {
			e.RawSetString("topic", lua.LString(p.pub.Topic))
			e.RawSetString("offset", lua.LNumber(p.pub.Offset))
			e.RawSetString("epoch", lua.LString(p.pub.Epoch))
		}
		t.Append(e)
	}
	L.Push(t)
	return 1
}

// closed(conn) → the reason it was closed for, or nil while open.
func (h *harness) closedReason(L *lua.LState) int {
	c := h.connArg(1, false)
	if c.closed == "" {
		L.Push(lua.LNil)
	} else {
		L.Push(lua.LString(c.closed))
	}
	return 1
}

// conn_state(conn) → conn.state as the handlers left it.
func (h *harness) connStateOf(L *lua.LState) int {
	c := h.connArg(1, false)
	L.Push(h.decode(c.data.state))
	return 1
}

// outbox() → every gateway and nats action of the handlers, in order:
// {action=, to=, identity=, topic=, subject=, payload=, route=, except=, reason=}
func (h *harness) outboxList(L *lua.LState) int {
	t := L.CreateTable(len(h.outbox), 0)
	for _, o := range h.outbox {
		e := L.NewTable()
		for k, v := range map[string]string{"action": o.action, "to": o.to, "identity": o.identity, "topic": o.topic,
			"subject": o.subject, "route": o.route, "except": o.except, "reason": o.reason, "id": o.id, "queue": o.queue} {
			if v != "" {
				e.RawSetString(k, lua.LString(v))
			}
		}
		if o.payload != nil {
			e.RawSetString("payload", h.decode(o.payload))
		}
		if o.action == "metric" {
			e.RawSetString("name", lua.LString(o.name))
			e.RawSetString("kind", lua.LString(o.kind))
			e.RawSetString("value", lua.LNumber(o.value))
		}
		t.Append(e)
	}
	L.Push(t)
	return 1
}

func (h *harness) decode(raw []byte) lua.LValue {
	if raw == nil {
		return lua.LNil
	}
	v, err := h.st.conv.Decode(raw)
	if err != nil {
		h.st.L.RaiseError("%s", err)
	}
	return v
}

// stub(kind) is stub.http(key, answer), stub.upstream(name, answer) or
// stub.nats(subject, answer): answer is the reply, or a function that
// returns it (or nil, err).
func (h *harness) stub(kind string) lua.LGFunction {
	return func(L *lua.LState) int {
		key := L.CheckString(1)
		answer := L.CheckAny(2)
		if kind == "http" {
			if _, ok := answer.(*lua.LTable); !ok {
				L.CheckFunction(2)
			}
		}
		h.stubs[kind][key] = answer
		return 0
	}
}

// answer calls the stub for key (kind's), with args when it is a
// function: its reply, or nil and the error it gave.
func (h *harness) answer(kind, key, caller string, args ...lua.LValue) (lua.LValue, lua.LValue) {
	L := h.st.L
	a, ok := h.stubs[kind][key]
	if !ok {
		L.RaiseError("%s: no stub for %s: add stub.%s(%q, answer) to the test", caller, key, kind, key)
	}
	fn, ok := a.(*lua.LFunction)
	if !ok {
		return a, lua.LNil
	}
	L.Push(fn)
	for _, arg := range args {
		L.Push(arg)
	}
	L.Call(len(args), 2)
	reply, err := L.Get(-2), L.Get(-1)
	L.Pop(2)
	return reply, err
}

// advance(ms) moves the clock on, running the timers that fall due, in
// order; a timer that fails fails the test.
func (h *harness) advance(L *lua.LState) int {
	ms := L.CheckNumber(1)
	if ms < 0 || ms != ms || float64(ms) > float64(100*MaxTimerDelay/time.Millisecond) {
		L.ArgError(1, "milliseconds from 0 to 100 years expected")
	}
	d := time.Duration(float64(ms) * float64(time.Millisecond))
	h.clock.advance(d, func() bool { return h.timerErr == nil && h.st.deadline.Err() == nil })
	if h.st.deadline.Err() != nil {
		L.RaiseError("clock.advance: the test ran out of time")
	}
	if h.timerErr != nil {
		L.RaiseError("clock.advance: %s", h.timerErr)
	}
	return 0
}

// now() → the test clock, in milliseconds since the test began.
func (h *harness) now(L *lua.LState) int {
	L.Push(lua.LNumber(h.clock.elapsed.Milliseconds()))
	return 1
}

// fakeClock is the clock of one test: time moves only in advance.
type fakeClock struct {
	base    time.Time
	elapsed time.Duration
	seq     int
	timers  []*fakeTimer
}

type fakeTimer struct {
	at   time.Duration
	seq  int
	f    func()
	done bool
}

func (c *fakeClock) Now() time.Time { return c.base.Add(c.elapsed) }

func (c *fakeClock) AfterFunc(d time.Duration, f func()) func() bool {
	c.seq++
	t := &fakeTimer{at: c.elapsed + d, seq: c.seq, f: f}
	c.timers = append(c.timers, t)
	return func() bool {
		if t.done {
			return false
		}
		t.done = true
		return true
	}
}

// advance runs the timers due within d, earliest first (in the order they
// were made when due at once), while more reports true.
func (c *fakeClock) advance(d time.Duration, more func() bool) {
	target := c.elapsed + d
	for more() {
		c.timers = slicesDeleteDone(c.timers)
		sort.SliceStable(c.timers, func(i, j int) bool {
			a, b := c.timers[i], c.timers[j]
			return a.at < b.at || a.at == b.at && a.seq < b.seq
		})
		if len(c.timers) == 0 || c.timers[0].at > target {
			break
		}
		t := c.timers[0]
		t.done = true
		c.elapsed = t.at
		t.f()
	}
	c.elapsed = max(c.elapsed, target)
}

func slicesDeleteDone(ts []*fakeTimer) []*fakeTimer {
	out := ts[:0]
	for _, t := range ts {
		if !t.done {
			out = append(out, t)
		}
	}
	return out
}
