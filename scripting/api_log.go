package scripting

import (
	"context"
	"log/slog"
	"strconv"
	"unicode/utf8"

	lua "github.com/yuin/gopher-lua"
)

// Bounds on what one log call writes. A script that logs a payload, or a
// string built up to the 16 MiB limit, would otherwise write lines of
// megabytes per call, which log pipelines drop or choke on (OpenResty's
// ngx.log cuts its lines at 2 KiB).
const (
	maxLogText   = 8 << 10 // bytes of the message and of each field's value
	maxLogFields = 64      // fields of one call; the rest are counted, not written
)

// clipLogText cuts s to maxLogText bytes, at a character boundary, and
// says how long it was.
func clipLogText(s string) string {
	if len(s) <= maxLogText {
		return s
	}
	cut := maxLogText
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "… (" + strconv.Itoa(len(s)) + " bytes)"
}

// log.<level>(message[, fields])
func (st *luaState) apiLog(level slog.Level) int {
	L := st.L
	msg := clipLogText(L.CheckAny(1).String())
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
		n := 0
		for k, v := fields.Next(lua.LNil); k != lua.LNil; k, v = fields.Next(k) {
			if n++; n <= maxLogFields {
				attrs = append(attrs, clipLogText(k.String()), st.logValue(v))
			}
		}
		if n > maxLogFields {
			attrs = append(attrs, "fields_not_logged", n-maxLogFields)
		}
	}
	log.Log(context.Background(), level, msg, attrs...)
	return 0
}

// logValue converts a Lua value for a log attribute: tables as JSON.
func (st *luaState) logValue(v lua.LValue) any {
	switch v := v.(type) {
	case lua.LString:
		return clipLogText(string(v))
	case lua.LNumber:
		return float64(v)
	case lua.LBool:
		return bool(v)
	case *lua.LTable:
		if out, err := st.conv.Encode(nil, v); err == nil {
			return clipLogText(string(out))
		}
	}
	return clipLogText(v.String())
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
