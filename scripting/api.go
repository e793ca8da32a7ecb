package scripting

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"regexp"

	lua "github.com/yuin/gopher-lua"

	"github.com/secureagentmessaging/samgw/gateway"
	"github.com/secureagentmessaging/samgw/internal/luabox"
	"github.com/secureagentmessaging/samgw/protocol"
)

// validName is the shape of module and file names: no path tricks.
var validName = regexp.MustCompile(`^[A-Za-z0-9_.-]+$`)

// registerAPI installs the script API: gateway, log, json, store, now,
// print and require.
func (st *luaState) registerAPI() {
	L := st.L
	L.SetGlobal("gateway", st.module(map[string]lua.LGFunction{
		"send":        st.apiSend,
		"send_to":     st.apiSendTo,
		"broadcast":   st.apiBroadcast,
		"connections": st.apiConnections,
		"close":       st.apiClose,
	}))
	L.SetGlobal("nats", st.module(map[string]lua.LGFunction{
		"publish": st.apiNATSPublish,
		"request": st.apiNATSRequest,
	}))
	logMod := st.module(nil)
	for name, level := range map[string]slog.Level{"debug": slog.LevelDebug, "info": slog.LevelInfo, "warn": slog.LevelWarn, "error": slog.LevelError} {
		logMod.RawSetString(name, L.NewFunction(func(L *lua.LState) int { return st.apiLog(level) }))
	}
	L.SetGlobal("log", logMod)
	luabox.OpenJSON(L, st.conv)
	L.SetGlobal("store", st.module(map[string]lua.LGFunction{
		"get":    st.apiStoreGet,
		"set":    st.apiStoreSet,
		"delete": st.apiStoreDelete,
		"incr":   st.apiStoreIncr,
	}))
	L.SetGlobal("print", L.NewFunction(st.apiPrint))
	L.SetGlobal("require", L.NewFunction(st.apiRequire))
}

func (st *luaState) module(funcs map[string]lua.LGFunction) *lua.LTable {
	t := st.L.NewTable()
	for name, fn := range funcs {
		t.RawSetString(name, st.L.NewFunction(fn))
	}
	return t
}

// server returns the gateway the current call runs in.
func (st *luaState) server() *gateway.Server {
	if st.call.conn == nil {
		st.L.RaiseError("the gateway module is not available while a script loads")
	}
	return st.call.conn.Server()
}

// payloadArg encodes argument n as a JSON payload.
func (st *luaState) payloadArg(n int) []byte {
	out, err := st.conv.Encode(nil, st.L.Get(n))
	if err != nil {
		st.L.ArgError(n, err.Error())
	}
	return out
}

// routeArg reads an optional route name at argument n.
func (st *luaState) routeArg(n int) string {
	route := st.L.OptString(n, "")
	if route != "" && !protocol.ValidRoute(route) {
		st.L.ArgError(n, fmt.Sprintf("invalid route name %q", truncate(route, 64)))
	}
	return route
}

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

// nats.publish(subject, payload) publishes on an allowed subject.
func (st *luaState) apiNATSPublish(L *lua.LState) int {
	cl := st.gen.engine.cluster
	if cl == nil {
		L.RaiseError("nats.publish: this gateway is not clustered (--nats)")
	}
	if err := cl.Publish(L.CheckString(1), st.payloadArg(2)); err != nil {
		if errors.Is(err, ErrClusterUnavailable) {
			st.clusterFailure("nats.publish")
		}
		L.RaiseError("nats.publish: %s", err)
	}
	return 0
}

// nats.request(subject, payload[, timeout_ms]) → the reply (JSON decoded,
// else a string), or nil, err
func (st *luaState) apiNATSRequest(L *lua.LState) int {
	cl := st.gen.engine.cluster
	if cl == nil {
		L.RaiseError("nats.request: this gateway is not clustered (--nats)")
	}
	subject, payload := L.CheckString(1), st.payloadArg(2)
	ctx, cancel := st.callContext(L.Get(3))
	defer cancel()
	reply, err := cl.Request(ctx, subject, payload)
	if err != nil {
		if errors.Is(err, ErrClusterUnavailable) || ctx.Err() != nil {
			return st.outboundFailure(ctx, err)
		}
		L.RaiseError("nats.request: %s", err)
	}
	if v, err := st.conv.DecodeUntrusted(reply); err == nil {
		L.Push(v)
		return 1
	}
	L.Push(lua.LString(reply))
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

// log.<level>(message[, fields])
func (st *luaState) apiLog(level slog.Level) int {
	L := st.L
	msg := L.CheckAny(1).String()
	log := st.gen.engine.log
	if !log.Enabled(context.Background(), level) {
		return 0
	}
	attrs := []any{"script", st.call.script, "generation", st.gen.number}
	if st.call.conn != nil {
		attrs = append(attrs, "conn", st.call.conn.ID())
	}
	if fields, ok := L.Get(2).(*lua.LTable); ok {
		fields.ForEach(func(k, v lua.LValue) {
			attrs = append(attrs, k.String(), st.logValue(v))
		})
	}
	log.Log(context.Background(), level, msg, attrs...)
	return 0
}

// logValue converts a Lua value for a log attribute: tables as JSON.
func (st *luaState) logValue(v lua.LValue) any {
	switch v := v.(type) {
	case lua.LString:
		return string(v)
	case lua.LNumber:
		return float64(v)
	case lua.LBool:
		return bool(v)
	case *lua.LTable:
		if out, err := st.conv.Encode(nil, v); err == nil {
			return string(out)
		}
	}
	return v.String()
}

// print(...) logs its arguments at info level, like log.info.
func (st *luaState) apiPrint(L *lua.LState) int {
	var b []byte
	for i := 1; i <= L.GetTop(); i++ {
		if i > 1 {
			b = append(b, '\t')
		}
		b = append(b, L.Get(i).String()...)
	}
	L.SetTop(0)
	L.Push(lua.LString(b))
	return st.apiLog(slog.LevelInfo)
}

// storeFailure raises a store error: cluster_unavailable when the shared
// store cannot be reached.
func (st *luaState) storeFailure(what string, err error) {
	if errors.Is(err, ErrClusterUnavailable) {
		st.clusterFailure(what)
	}
	st.L.RaiseError("%s: %s", what, err)
}

// store.get(key) → value or nil
func (st *luaState) apiStoreGet(L *lua.LState) int {
	raw, err := st.gen.engine.kv.Get(st.deadline, L.CheckString(1))
	if err != nil {
		st.storeFailure("store.get", err)
	}
	if raw == nil {
		L.Push(lua.LNil)
		return 1
	}
	v, err := st.conv.DecodeUntrusted(raw)
	if err != nil {
		L.RaiseError("store.get: %s", err)
	}
	L.Push(v)
	return 1
}

// store.set(key, value); a nil value deletes the key.
func (st *luaState) apiStoreSet(L *lua.LState) int {
	key := L.CheckString(1)
	var err error
	if L.Get(2) == lua.LNil {
		err = st.gen.engine.kv.Delete(st.deadline, key)
	} else {
		err = st.gen.engine.kv.Set(st.deadline, key, st.payloadArg(2))
	}
	if err != nil {
		st.storeFailure("store.set", err)
	}
	return 0
}

// store.delete(key)
func (st *luaState) apiStoreDelete(L *lua.LState) int {
	if err := st.gen.engine.kv.Delete(st.deadline, L.CheckString(1)); err != nil {
		st.storeFailure("store.delete", err)
	}
	return 0
}

// store.incr(key[, n]) → the new number
func (st *luaState) apiStoreIncr(L *lua.LState) int {
	v, err := st.gen.engine.kv.Incr(st.deadline, L.CheckString(1), float64(L.OptNumber(2, 1)))
	if err != nil {
		st.storeFailure("store.incr", err)
	}
	L.Push(lua.LNumber(v))
	return 1
}

// require(name) loads DIR/lib/name.lua once per state and returns its
// result. Nothing outside lib/ can be loaded.
func (st *luaState) apiRequire(L *lua.LState) int {
	name := L.CheckString(1)
	if !validName.MatchString(name) {
		L.RaiseError("require: invalid module name %q", name)
	}
	if v, ok := st.modules[name]; ok {
		L.Push(v)
		return 1
	}
	proto, ok := st.gen.libs[name]
	if !ok {
		L.RaiseError("require: no module %q in lib/", name)
	}
	fn := L.NewFunctionFromProto(proto)
	fn.Env = luabox.NewEnv(L)
	L.Push(fn)
	L.Call(0, 1)
	v := L.Get(-1)
	if v == lua.LNil {
		v = lua.LTrue
	}
	st.modules[name] = v
	return 1
}
