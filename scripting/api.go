package scripting

import (
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
		"subscribe":   st.apiSubscribe,
		"unsubscribe": st.apiUnsubscribe,
		"publish":     st.apiPublish,
		"deliver":     st.apiDeliver,
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
	luabox.OpenHelpers(L)
	L.SetGlobal("store", st.module(map[string]lua.LGFunction{
		"get":    st.apiStoreGet,
		"set":    st.apiStoreSet,
		"delete": st.apiStoreDelete,
		"incr":   st.apiStoreIncr,
		"cas":    st.apiStoreCAS,
		"keys":   st.apiStoreKeys,
	}))
	L.SetGlobal("metrics", st.metricsModule(st.apiMetricsRecord))
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
	if st.call.conn != nil {
		return st.call.conn.Server()
	}
	if st.call.background {
		if srv := st.gen.engine.served.Load(); srv != nil {
			return srv
		}
	}
	st.L.RaiseError("the gateway module is not available while a script loads")
	return nil
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
