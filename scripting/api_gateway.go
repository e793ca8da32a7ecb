package scripting

import (
	"errors"
	"fmt"
	"math"

	lua "github.com/yuin/gopher-lua"

	"github.com/secureagentmessaging/samgw/access"
	"github.com/secureagentmessaging/samgw/delivery"
	"github.com/secureagentmessaging/samgw/gateway"
	"github.com/secureagentmessaging/samgw/protocol"
)

// clusterFailure raises a cluster error: the call fails with
// cluster_unavailable when the script lets it escape.
func (st *luaState) clusterFailure(what string) {
	st.call.upstream = protocol.CodeClusterUnavailable
	st.L.RaiseError("%s: cluster unavailable", what)
}

// gateway.send(conn_id, payload[, route]) → boolean
func (st *luaState) apiSend(L *lua.LState) int {
	id := L.CheckString(1)
	payload := st.payloadArg(2)
	route := st.routeArg(3)
	if cl := st.gen.engine.cluster; cl != nil {
		ok, err := cl.Send(st.deadline, id, payload, route)
		if err != nil {
			st.clusterFailure("gateway.send")
		}
		L.Push(lua.LBool(ok))
		return 1
	}
	c := st.server().Conn(id)
	ok := c != nil
	if ok {
		_, err := c.Send(payload, route)
		ok = err == nil
	}
	L.Push(lua.LBool(ok))
	return 1
}

// gateway.send_to(identity, payload[, route]) → count of connections reached
func (st *luaState) apiSendTo(L *lua.LState) int {
	identity := L.CheckString(1)
	payload := st.payloadArg(2)
	route := st.routeArg(3)
	if identity == "" {
		// No identity is not an identity: never every connection that has
		// none (all of them, without authentication).
		L.Push(lua.LNumber(0))
		return 1
	}
	st.check("gateway.send_to", st.actor(), access.KindSendTo, identity)
	if cl := st.gen.engine.cluster; cl != nil {
		n, err := cl.SendTo(st.deadline, identity, payload, route)
		if err != nil {
			st.clusterFailure("gateway.send_to")
		}
		L.Push(lua.LNumber(n))
		return 1
	}
	count := 0
	st.server().Range(func(c *gateway.Conn) bool {
		if c.Identity() == identity {
			if _, err := c.Send(payload, route); err == nil {
				count++
			}
		}
		return true
	})
	L.Push(lua.LNumber(count))
	return 1
}

// gateway.broadcast(payload[, route][, except_id]) → count
func (st *luaState) apiBroadcast(L *lua.LState) int {
	payload := st.payloadArg(1)
	route := st.routeArg(2)
	except := L.OptString(3, "")
	if cl := st.gen.engine.cluster; cl != nil {
		n, err := cl.Broadcast(st.deadline, payload, route, except)
		if err != nil {
			st.clusterFailure("gateway.broadcast")
		}
		L.Push(lua.LNumber(n))
		return 1
	}
	count := 0
	st.server().Range(func(c *gateway.Conn) bool {
		if c.ID() != except {
			if _, err := c.Send(payload, route); err == nil {
				count++
			}
		}
		return true
	})
	L.Push(lua.LNumber(count))
	return 1
}

// gateway.connections(["local"|"cluster"]) → array of ids: this node's
// (the default), or every node's.
func (st *luaState) apiConnections(L *lua.LState) int {
	scope := L.OptString(1, "local")
	if scope != "local" && scope != "cluster" {
		L.ArgError(1, `want "local" or "cluster"`)
	}
	var ids []string
	if cl := st.gen.engine.cluster; cl != nil && scope == "cluster" {
		var err error
		if ids, err = cl.Connections(st.deadline); err != nil {
			st.clusterFailure("gateway.connections")
		}
	} else {
		for _, in := range st.server().Connections() {
			ids = append(ids, in.ID)
		}
	}
	t := st.conv.NewArray(len(ids))
	for i, id := range ids {
		t.RawSetInt(i+1, lua.LString(id))
	}
	L.Push(t)
	return 1
}

// gateway.close(conn_id[, reason]) → boolean
func (st *luaState) apiClose(L *lua.LState) int {
	id := L.CheckString(1)
	reason := L.OptString(2, "closed by script")
	c := st.server().Conn(id)
	if c != nil {
		c.Close(reason)
	}
	L.Push(lua.LBool(c != nil))
	return 1
}

// topicArg reads a topic name at argument n.
func (st *luaState) topicArg(n int) string {
	topic := st.L.CheckString(n)
	if !ValidTopic(topic) {
		st.L.ArgError(n, fmt.Sprintf("invalid topic %q: want dot-separated words of [A-Za-z0-9_-], at most %d bytes", truncate(topic, 64), MaxTopicLen))
	}
	return topic
}

// gateway.subscribe(conn_id, topic[, opts]) → false when the connection
// is not on this node (or gone); true, or with opts {since, epoch} a
// table {recovered, offset, epoch} once what it missed was sent.
func (st *luaState) apiSubscribe(L *lua.LState) int {
	id, topic := L.CheckString(1), st.topicArg(2)
	from, resume := st.resumeOptions(3)
	c := st.server().Conn(id)
	if c == nil {
		L.Push(lua.LFalse)
		return 1
	}
	if st.actor() != nil {
		st.check("gateway.subscribe", c, access.KindSubscribe, topic) // the subscriber's roles
	}
	topics := st.gen.engine.topics
	if !resume {
		if _, _, err := topics.subscribe(c, topic); err != nil {
			L.RaiseError("gateway.subscribe: %s", err)
		}
		L.Push(lua.LTrue)
		return 1
	}
	ctx, cancel := st.storeContext()
	defer cancel()
	rec, err := topics.resume(ctx, c, topic, from)
	if errors.Is(err, delivery.ErrUnavailable) {
		st.clusterFailure("gateway.subscribe")
	}
	if err != nil {
		L.RaiseError("gateway.subscribe: %s", err)
	}
	L.Push(recoveryTable(L, rec))
	return 1
}

// recoveryTable is gateway.subscribe's answer to a resume:
// {recovered, offset, epoch}.
func recoveryTable(L *lua.LState, rec delivery.Recovery) *lua.LTable {
	t := L.CreateTable(0, 3)
	t.RawSetString("recovered", lua.LBool(rec.Recovered))
	t.RawSetString("offset", lua.LNumber(rec.Position.Offset))
	if rec.Position.Epoch != "" {
		t.RawSetString("epoch", lua.LString(rec.Position.Epoch))
	}
	return t
}

// resumeOptions reads gateway.subscribe's optional table at argument n:
// {since = OFFSET, epoch = "..."}, or {} for from now; resume is false
// without one.
func (st *luaState) resumeOptions(n int) (from resumeFrom, resume bool) {
	L := st.L
	if L.Get(n) == lua.LNil {
		return from, false
	}
	t := L.CheckTable(n)
	switch v := t.RawGetString("since").(type) {
	case *lua.LNilType:
		from.Now = true
	case lua.LNumber:
		if v < 0 || v != lua.LNumber(math.Trunc(float64(v))) || float64(v) > 1<<53 {
			L.ArgError(n, "since must be an offset: a whole number, 0 or more")
		}
		from.Since = uint64(v)
	default:
		L.ArgError(n, "since must be an offset: a whole number, 0 or more")
	}
	switch v := t.RawGetString("epoch").(type) {
	case *lua.LNilType:
	case lua.LString:
		if len(v) > protocol.MaxEpochLen {
			L.ArgError(n, fmt.Sprintf("epoch must be a string of at most %d bytes", protocol.MaxEpochLen))
		}
		from.Epoch = string(v)
	default:
		L.ArgError(n, fmt.Sprintf("epoch must be a string of at most %d bytes", protocol.MaxEpochLen))
	}
	return from, true
}

// gateway.unsubscribe(conn_id, topic) → whether it was subscribed
func (st *luaState) apiUnsubscribe(L *lua.LState) int {
	id, topic := L.CheckString(1), st.topicArg(2)
	c := st.server().Conn(id)
	L.Push(lua.LBool(c != nil && st.gen.engine.topics.unsubscribe(c, topic)))
	return 1
}

// gateway.publish(topic, payload[, route]) → how many subscribers it
// reached, on every node, and for a topic that keeps history the
// publication's offset
func (st *luaState) apiPublish(L *lua.LState) int {
	topic := st.topicArg(1)
	payload := st.payloadArg(2)
	route := st.routeArg(3)
	st.server() // only where the gateway module works
	st.check("gateway.publish", st.actor(), access.KindPublish, topic)
	topics := st.gen.engine.topics
	push := TopicPush{Topic: topic, Payload: payload, Route: route}
	n := 0
	if topics.keeps(topic) {
		// The store numbers it first; this node's subscribers get it in
		// offset order (before the next append of the topic here).
		ctx, cancel := st.storeContext()
		e, err := topics.history.Append(ctx, topic, payload, route, func(e delivery.Entry) { n = topics.publish(pushOf(e)) })
		cancel()
		switch {
		case errors.Is(err, delivery.ErrUnavailable):
			st.clusterFailure("gateway.publish")
		case err != nil:
			L.RaiseError("gateway.publish: %s", err)
		}
		push = pushOf(e)
	} else {
		n = topics.publish(push)
	}
	if cl := st.gen.engine.cluster; cl != nil {
		remote, err := cl.PublishTopic(st.deadline, push)
		if err != nil {
			st.clusterFailure("gateway.publish")
		}
		n += remote
	}
	L.Push(lua.LNumber(n))
	if push.Offset == 0 {
		return 1
	}
	L.Push(lua.LNumber(push.Offset))
	return 2
}
