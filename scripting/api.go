package scripting

import (
	"context"
	"fmt"
	"log/slog"
	"regexp"

	lua "github.com/yuin/gopher-lua"

	"github.com/secureagentmessaging/samgw/gateway"
	"github.com/secureagentmessaging/samgw/protocol"
)

// validName is the shape of route and module names: no path tricks.
var validName = regexp.MustCompile(`^[A-Za-z0-9_.-]+$`)

// registerAPI installs the script API: gateway, log, json, store, now,
// print and require.
func (st *luaState) registerAPI() {
	L := st.L
	L.SetGlobal("gateway", st.module(map[string]lua.LGFunction{
		"send":        st.apiSend,
		"broadcast":   st.apiBroadcast,
		"connections": st.apiConnections,
		"close":       st.apiClose,
	}))
	logMod := st.module(nil)
	for name, level := range map[string]slog.Level{"debug": slog.LevelDebug, "info": slog.LevelInfo, "warn": slog.LevelWarn, "error": slog.LevelError} {
		logMod.RawSetString(name, L.NewFunction(func(L *lua.LState) int { return st.apiLog(level) }))
	}
	L.SetGlobal("log", logMod)
	registerCommon(L, st.conv)
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
	out, err := st.conv.encode(nil, st.L.Get(n))
	if err != nil {
		st.L.ArgError(n, err.Error())
	}
	return out
}

// routeArg reads an optional route name at argument n.
func (st *luaState) routeArg(n int) string {
	route := st.L.OptString(n, "")
	if route != "" && !validName.MatchString(route) {
		st.L.ArgError(n, fmt.Sprintf("invalid route name %q", route))
	}
	return route
}

// gateway.send(conn_id, payload[, route]) → boolean
func (st *luaState) apiSend(L *lua.LState) int {
	id := L.CheckString(1)
	payload := st.payloadArg(2)
	route := st.routeArg(3)
	c := st.server().Conn(id)
	ok := c != nil
	if ok {
		_, err := c.Send(payload, route)
		ok = err == nil
	}
	L.Push(lua.LBool(ok))
	return 1
}

// gateway.broadcast(payload[, route][, except_id]) → count
func (st *luaState) apiBroadcast(L *lua.LState) int {
	payload := st.payloadArg(1)
	route := st.routeArg(2)
	except := L.OptString(3, "")
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

// gateway.connections() → array of ids
func (st *luaState) apiConnections(L *lua.LState) int {
	infos := st.server().Connections()
	t := st.conv.newArray(len(infos))
	for i, in := range infos {
		t.RawSetInt(i+1, lua.LString(in.ID))
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
		if out, err := st.conv.encode(nil, v); err == nil {
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

// registerCommon installs what handlers and scenarios share: the json
// module and now().
func registerCommon(L *lua.LState, conv *converter) {
	mod := L.NewTable()
	mod.RawSetString("encode", L.NewFunction(func(L *lua.LState) int {
		out, err := conv.encode(nil, L.CheckAny(1))
		if err != nil {
			L.RaiseError("json.encode: %s", err)
		}
		L.Push(lua.LString(out))
		return 1
	}))
	mod.RawSetString("decode", L.NewFunction(func(L *lua.LState) int {
		v, err := conv.decodeUntrusted([]byte(L.CheckString(1)))
		if err != nil {
			L.RaiseError("json.decode: %s", err)
		}
		L.Push(v)
		return 1
	}))
	// json.array([table]) → the table (a new one if none), marked to encode
	// as a JSON array even when empty.
	mod.RawSetString("array", L.NewFunction(func(L *lua.LState) int {
		t, ok := L.Get(1).(*lua.LTable)
		if !ok {
			t = L.NewTable()
		}
		t.Metatable = conv.arrayMeta
		L.Push(t)
		return 1
	}))
	mod.RawSetString("null", conv.null)
	L.SetGlobal("json", mod)
	L.SetGlobal("now", L.NewFunction(func(L *lua.LState) int {
		L.Push(lua.LNumber(protocol.Now()))
		return 1
	}))
}

// store.get(key) → value or nil
func (st *luaState) apiStoreGet(L *lua.LState) int {
	raw := st.gen.engine.store.Get(L.CheckString(1))
	if raw == nil {
		L.Push(lua.LNil)
		return 1
	}
	v, err := st.conv.decode(raw)
	if err != nil {
		L.RaiseError("store.get: %s", err)
	}
	L.Push(v)
	return 1
}

// store.set(key, value); a nil value deletes the key.
func (st *luaState) apiStoreSet(L *lua.LState) int {
	key := L.CheckString(1)
	if L.Get(2) == lua.LNil {
		st.gen.engine.store.Delete(key)
		return 0
	}
	st.gen.engine.store.Set(key, st.payloadArg(2))
	return 0
}

// store.delete(key)
func (st *luaState) apiStoreDelete(L *lua.LState) int {
	st.gen.engine.store.Delete(L.CheckString(1))
	return 0
}

// store.incr(key[, n]) → the new number
func (st *luaState) apiStoreIncr(L *lua.LState) int {
	v, err := st.gen.engine.store.Incr(L.CheckString(1), float64(L.OptNumber(2, 1)))
	if err != nil {
		L.RaiseError("store.incr: %s", err)
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
	fn.Env = st.newEnv()
	L.Push(fn)
	L.Call(0, 1)
	v := L.Get(-1)
	if v == lua.LNil {
		v = lua.LTrue
	}
	st.modules[name] = v
	return 1
}
