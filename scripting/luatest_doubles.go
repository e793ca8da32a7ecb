package scripting

import (
	"cmp"
	"fmt"
	"strconv"
	"strings"

	lua "github.com/yuin/gopher-lua"

	"github.com/secureagentmessaging/samgw/access"
	"github.com/secureagentmessaging/samgw/delivery"
	"github.com/secureagentmessaging/samgw/internal/luabox"
	"github.com/secureagentmessaging/samgw/protocol"
)

// The gateway module of `samgw test`: it acts on the connections the test
// made with new_conn, as the real one acts on a server's, and records every
// action in the outbox.

func (h *harness) push(c *fakeConn, payload []byte, route string) {
	c.pushes = append(c.pushes, fakePush{payload: payload, route: route})
}

func (h *harness) gwSend(L *lua.LState) int {
	id, payload, route := L.CheckString(1), h.st.payloadArg(2), h.st.routeArg(3)
	h.outbox = append(h.outbox, outboxEntry{action: "send", to: id, payload: payload, route: route})
	c := h.conn(id)
	if c != nil {
		h.push(c, payload, route)
	}
	L.Push(lua.LBool(c != nil))
	return 1
}

// refuse raises forbidden, as the server would, when the call handles a
// message of c and c's grants (new_conn{grants = …}) do not allow it.
func (h *harness) refuse(what string, c connPeer, kind access.Kind, target string) {
	if !h.st.call.message || c == nil || c.Can(kind, target) {
		return
	}
	h.st.call.upstream = protocol.CodeForbidden
	h.st.L.RaiseError("%s: identity %q may not %s %q", what, c.Identity(), kind, target)
}

func (h *harness) gwSendTo(L *lua.LState) int {
	identity, payload, route := L.CheckString(1), h.st.payloadArg(2), h.st.routeArg(3)
	h.refuse("gateway.send_to", h.st.call.peer, access.KindSendTo, identity)
	h.outbox = append(h.outbox, outboxEntry{action: "send_to", identity: identity, payload: payload, route: route})
	n := 0
	for _, c := range h.conns {
		if identity != "" && c.closed == "" && c.identity == identity { // as the server: "" is no one
			h.push(c, payload, route)
			n++
		}
	}
	L.Push(lua.LNumber(n))
	return 1
}

// gwDeliver stores nothing: it records the message in the outbox (with its
// id, as "id") and returns the next seq, from 1.
func (h *harness) gwDeliver(L *lua.LState) int {
	identity, payload, opts := L.CheckString(1), h.st.payloadArg(2), h.st.deliverOptions(3)
	h.refuse("gateway.deliver", h.st.call.peer, access.KindSendTo, identity)
	if identity == "" {
		L.RaiseError("gateway.deliver: %s", deliverFailure(identity, delivery.ErrUnknownIdentity))
	}
	h.delivered++
	h.outbox = append(h.outbox, outboxEntry{action: "deliver", identity: identity, payload: payload, route: opts.Route, id: opts.ID})
	L.Push(lua.LNumber(h.delivered))
	return 1
}

func (h *harness) gwBroadcast(L *lua.LState) int {
	payload, route, except := h.st.payloadArg(1), h.st.routeArg(2), L.OptString(3, "")
	h.outbox = append(h.outbox, outboxEntry{action: "broadcast", payload: payload, route: route, except: except})
	n := 0
	for _, c := range h.conns {
		if c.closed == "" && c.id != except {
			h.push(c, payload, route)
			n++
		}
	}
	L.Push(lua.LNumber(n))
	return 1
}

func (h *harness) gwConnections(L *lua.LState) int {
	t := L.NewTable()
	for _, c := range h.conns {
		if c.closed == "" {
			t.Append(lua.LString(c.id))
		}
	}
	L.Push(t)
	return 1
}

func (h *harness) gwClose(L *lua.LState) int {
	id, reason := L.CheckString(1), L.OptString(2, "closed by script")
	h.outbox = append(h.outbox, outboxEntry{action: "close", to: id, reason: reason})
	c := h.conn(id)
	if c != nil {
		c.closed = reason
		clear(c.topics)
	}
	L.Push(lua.LBool(c != nil))
	return 1
}

func (h *harness) gwSubscribe(L *lua.LState) int {
	id, topic := L.CheckString(1), h.st.topicArg(2)
	from, resume := h.st.resumeOptions(3)
	c := h.conn(id)
	if c == nil {
		L.Push(lua.LFalse)
		return 1
	}
	h.refuse("gateway.subscribe", c, access.KindSubscribe, topic)
	if !c.topics[topic] && len(c.topics) >= MaxTopicsPerConn {
		L.RaiseError("gateway.subscribe: %s (%d)", ErrTooManyTopics, MaxTopicsPerConn)
	}
	c.topics[topic] = true
	if !resume {
		L.Push(lua.LTrue)
		return 1
	}
	rec := h.recoverFor(topic, from)
	for _, e := range rec.Entries {
		c.pushes = append(c.pushes, fakePush{payload: e.Payload, route: e.Route, pub: &e})
	}
	L.Push(recoveryTable(L, rec))
	return 1
}

func (h *harness) gwUnsubscribe(L *lua.LState) int {
	id, topic := L.CheckString(1), h.st.topicArg(2)
	c := h.conn(id)
	was := c != nil && c.topics[topic]
	if was {
		delete(c.topics, topic)
	}
	L.Push(lua.LBool(was))
	return 1
}

func (h *harness) gwPublish(L *lua.LState) int {
	topic, payload, route := h.st.topicArg(1), h.st.payloadArg(2), h.st.routeArg(3)
	h.refuse("gateway.publish", h.st.call.peer, access.KindPublish, topic)
	h.outbox = append(h.outbox, outboxEntry{action: "publish", topic: topic, payload: payload, route: route})
	e, kept := h.appendPublication(topic, payload, route)
	n := 0
	for _, c := range h.conns {
		if c.closed == "" && c.topics[topic] {
			p := fakePush{payload: payload, route: route}
			if kept {
				p.pub = &e
			}
			c.pushes = append(c.pushes, p)
			n++
		}
	}
	L.Push(lua.LNumber(n))
	if !kept {
		return 1
	}
	L.Push(lua.LNumber(e.Offset))
	return 2
}

// http.request under test: the stub for "METHOD url", else for "url".
func (h *harness) httpCall(opts *lua.LTable) int {
	L := h.st.L
	url, ok := opts.RawGetString("url").(lua.LString)
	if !ok || url == "" {
		L.RaiseError("http.request: url is required")
	}
	method := strings.ToUpper(cmp.Or(lua.LVAsString(opts.RawGetString("method")), "GET"))
	key := method + " " + string(url)
	if _, ok := h.stubs["http"][key]; !ok {
		if _, ok := h.stubs["http"][string(url)]; ok {
			key = string(url)
		}
	}
	req := L.NewTable()
	req.RawSetString("method", lua.LString(method))
	req.RawSetString("url", url)
	req.RawSetString("headers", opts.RawGetString("headers"))
	req.RawSetString("body", opts.RawGetString("body"))
	reply, err := h.answer("http", key, "http.request", req)
	res, ok := reply.(*lua.LTable)
	if !ok {
		L.Push(lua.LNil)
		L.Push(cmp.Or[lua.LValue](err, lua.LString("request failed")))
		return 2
	}
	out := L.CreateTable(0, 3)
	status := res.RawGetString("status")
	if status == lua.LNil {
		status = lua.LNumber(200)
	}
	out.RawSetString("status", status)
	headers := res.RawGetString("headers")
	if headers == lua.LNil {
		headers = L.NewTable()
	}
	out.RawSetString("headers", headers)
	body := res.RawGetString("body")
	if body == lua.LNil {
		body = lua.LString("")
	}
	out.RawSetString("body", body)
	L.Push(out)
	return 1
}

// upstream.request(name, payload[, route][, timeout_ms]) under test.
func (h *harness) upstreamRequest(L *lua.LState) int {
	name := L.CheckString(1)
	payload := h.roundTrip(L.Get(2), "payload")
	return h.pushAnswer(h.answer("upstream", name, "upstream.request", payload, routeOrNil(L.Get(3))))
}

// pushAnswer returns a stub's answer to the script: the reply (through
// JSON), or nil and the error the stub gave.
func (h *harness) pushAnswer(reply, err lua.LValue) int {
	L := h.st.L
	if reply == lua.LNil && err != lua.LNil {
		L.Push(lua.LNil)
		L.Push(err)
		return 2
	}
	L.Push(h.roundTrip(reply, "the stub's reply"))
	return 1
}

// upstream.all{ {name, payload[, route][, timeout_ms]}, … } under test.
func (h *harness) upstreamAll(L *lua.LState) int {
	specs := L.CheckTable(1)
	n := specs.Len()
	if n > MaxParallelCalls {
		L.ArgError(1, fmt.Sprintf("at most %d calls", MaxParallelCalls))
	}
	results := L.CreateTable(n, 0)
	for i := 1; i <= n; i++ {
		spec, ok := specs.RawGetInt(i).(*lua.LTable)
		if !ok {
			L.ArgError(1, fmt.Sprintf("call %d: a table {name, payload[, route][, timeout_ms]} expected", i))
		}
		name, ok := spec.RawGetInt(1).(lua.LString)
		if !ok {
			L.ArgError(1, fmt.Sprintf("call %d: the upstream's name expected", i))
		}
		reply, err := h.answer("upstream", string(name), "upstream.all", h.roundTrip(spec.RawGetInt(2), "payload"), routeOrNil(spec.RawGetInt(3)))
		r := L.NewTable()
		if reply == lua.LNil && err != lua.LNil {
			r.RawSetString("error", err)
		} else if reply != lua.LNil {
			r.RawSetString("reply", h.roundTrip(reply, "the stub's reply"))
		}
		results.RawSetInt(i, r)
	}
	L.Push(results)
	return 1
}

// routeOrNil is the route argument of an upstream call (a string), or nil
// where the call gave a timeout or nothing.
func routeOrNil(v lua.LValue) lua.LValue {
	if s, ok := v.(lua.LString); ok {
		return s
	}
	return lua.LNil
}

func (h *harness) natsPublish(L *lua.LState) int {
	subject, payload := L.CheckString(1), h.st.payloadArg(2)
	h.outbox = append(h.outbox, outboxEntry{action: "nats.publish", subject: subject, payload: payload})
	return 0
}

func (h *harness) natsRequest(L *lua.LState) int {
	subject := L.CheckString(1)
	payload := h.roundTrip(L.Get(2), "payload")
	return h.pushAnswer(h.answer("nats", subject, "nats.request", payload))
}

// assert_eq(got, want[, message]): equal values, tables compared deeply
// (as JSON would see them); the failure names the caller's file:line.
func (h *harness) assertEq(L *lua.LState) int {
	got, want := L.Get(1), L.Get(2)
	if !h.deepEqual(got, want, 0) {
		msg := ""
		if s, ok := L.Get(3).(lua.LString); ok {
			msg = string(s) + ": "
		}
		L.RaiseError("%sgot %s, want %s", msg, h.show(got), h.show(want))
	}
	return 0
}

// assert_error(fn[, text]) → the error fn raised, which must contain text;
// the failure names the caller's file:line.
func (h *harness) assertError(L *lua.LState) int {
	fn := L.CheckFunction(1)
	want := L.OptString(2, "")
	L.Push(fn)
	err := L.PCall(0, 0, nil)
	if err == nil {
		L.RaiseError("no error raised (want one containing %q)", want)
	}
	text := errorTextOf(err)
	if !strings.Contains(text, want) {
		L.RaiseError("error %q does not contain %q", text, want)
	}
	L.Push(lua.LString(text))
	return 1
}

func errorTextOf(err error) string { return luabox.ErrorText(err) }

// deepEqual compares as assert_eq does: tables key by key, the rest with
// Lua's == (exact integers compare by value).
func (h *harness) deepEqual(a, b lua.LValue, depth int) bool {
	ta, aTable := a.(*lua.LTable)
	tb, bTable := b.(*lua.LTable)
	if !aTable || !bTable {
		if aTable != bTable {
			return false
		}
		if sa, sb := h.show(a), h.show(b); a.Type() != b.Type() && sa == sb {
			return true // an exact integer and the number it spells
		}
		return h.st.L.Equal(a, b)
	}
	if ta == tb {
		return true
	}
	if depth > 100 {
		h.st.L.RaiseError("assert_eq: tables nested deeper than 100")
	}
	same := true
	ta.ForEach(func(k, v lua.LValue) {
		if same && !h.deepEqual(v, tb.RawGet(k), depth+1) {
			same = false
		}
	})
	tb.ForEach(func(k, _ lua.LValue) {
		if same && ta.RawGet(k) == lua.LNil {
			same = false
		}
	})
	return same
}

// show renders v for a failure message: JSON where it is JSON.
func (h *harness) show(v lua.LValue) string {
	switch v := v.(type) {
	case lua.LString:
		return fmt.Sprintf("%q", string(v))
	case *lua.LNilType:
		return "nil"
	}
	if out, err := h.st.conv.Encode(nil, v); err == nil {
		return string(out)
	}
	return v.String()
}

// The queue module's doubles: push records the job (its id: opts.id, or
// j1, j2, …) and counts it pending; join and leave record the membership.
func (h *harness) registerQueue(st *luaState) {
	st.L.SetGlobal("queue", st.module(map[string]lua.LGFunction{
		"push": h.queuePush, "join": h.queueJoin, "leave": h.queueLeave, "stats": h.queueStats,
	}))
}

func (h *harness) queuePush(L *lua.LState) int {
	name, payload, opts := h.st.queueArg(1), h.st.payloadArg(2), h.st.pushOptions(3)
	h.refuse("queue.push", h.st.call.peer, access.KindPush, name)
	h.pushed++
	id := opts.ID
	if id == "" {
		id = "j" + strconv.Itoa(h.pushed)
	}
	if h.queued == nil {
		h.queued = map[string]int{}
	}
	h.queued[name]++
	h.outbox = append(h.outbox, outboxEntry{action: "queue.push", queue: name, id: id, payload: payload})
	L.Push(lua.LString(id))
	return 1
}

func (h *harness) queueJoin(L *lua.LState) int {
	id, name := L.CheckString(1), h.st.queueArg(2)
	c := h.conn(id)
	if c == nil {
		L.Push(lua.LFalse)
		return 1
	}
	h.refuse("queue.join", c, access.KindJoin, name)
	if c.queues == nil {
		c.queues = map[string]bool{}
	}
	c.queues[name] = true
	h.outbox = append(h.outbox, outboxEntry{action: "queue.join", to: id, queue: name})
	L.Push(lua.LTrue)
	return 1
}

func (h *harness) queueLeave(L *lua.LState) int {
	id, name := L.CheckString(1), h.st.queueArg(2)
	c := h.conn(id)
	was := c != nil && c.queues[name]
	if was {
		delete(c.queues, name)
		h.outbox = append(h.outbox, outboxEntry{action: "queue.leave", to: id, queue: name})
	}
	L.Push(lua.LBool(was))
	return 1
}

func (h *harness) queueStats(L *lua.LState) int {
	name := h.st.queueArg(1)
	L.Push(queueStatsTable(L, delivery.QueueStats{Pending: uint64(h.queued[name])}))
	return 1
}

// job_event(event, {queue =, id =, worker =, deliveries =}): default.lua's
// on_job, as the queues call it.
func (h *harness) jobEvent(L *lua.LState) int {
	event, t := L.CheckString(1), L.CheckTable(2)
	funcs := h.st.routes[defaultRoute]
	if funcs == nil || funcs.onJob == nil {
		L.RaiseError("job_event: default.lua defines no on_job")
	}
	saved := h.st.call
	h.st.call = callInfo{script: funcs.script, background: true}
	err := L.CallByParam(lua.P{Fn: funcs.onJob, NRet: 0, Protect: true}, lua.LString(event), t)
	h.st.call = saved
	if err != nil {
		L.Error(lua.LString(errorTextOf(err)), 0)
	}
	return 0
}
