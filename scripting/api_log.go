package scripting

import (
	"context"
	"log/slog"

	lua "github.com/yuin/gopher-lua"
)

// log.<level>(message[, fields])
func (st *luaState) apiLog(level slog.Level) int {
	L := st.L
	msg := L.CheckAny(1).String()
	log := st.gen.engine.log
	if !log.Enabled(context.Background(), level) {
		return 0
	}
	attrs := []any{"script", st.call.script, "generation", st.gen.number}
	if st.call.peer != nil {
		attrs = append(attrs, "conn", st.call.peer.ID())
	}
	if fields, ok := L.Get(2).(*lua.LTable); ok {
		// Next keeps the order the fields were given in (ForEach would not).
		for k, v := fields.Next(lua.LNil); k != lua.LNil; k, v = fields.Next(k) {
			attrs = append(attrs, k.String(), st.logValue(v))
		}
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
