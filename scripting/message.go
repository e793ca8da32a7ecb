package scripting

import (
	lua "github.com/yuin/gopher-lua"

	"github.com/secureagentmessaging/samgw/internal/luabox"
	"github.com/secureagentmessaging/samgw/protocol"
)

// lDataType is msg.type of every message a handler sees, boxed once.
var lDataType lua.LValue = lua.LString("data")

// msgObject is the msg a handler receives: a userdata whose fields are read
// through the state's msg metatable. Building a Lua table per message costs
// several allocations per field in gopher-lua; this costs two in all, and a
// field is only converted when the script reads it.
type msgObject struct {
	id, route string
	timestamp int64
	payload   lua.LValue
	fields    *lua.LTable // fields the script assigned, which take precedence
}

// msgUserData is a msg object and its userdata in one allocation.
type msgUserData struct {
	ud  lua.LUserData
	obj msgObject
}

// newMsg returns the msg object of m with its decoded payload.
func (st *luaState) newMsg(m *protocol.Message, payload lua.LValue) *lua.LUserData {
	b := &msgUserData{obj: msgObject{id: m.ID, route: m.Route, timestamp: m.Timestamp, payload: payload}}
	b.ud.Env = st.L.Env
	b.ud.Value = &b.obj
	b.ud.Metatable = st.msgMeta
	return &b.ud
}

// get returns field key of the message.
func (m *msgObject) get(key string) lua.LValue {
	if m.fields != nil {
		if v := m.fields.RawGetString(key); v != lua.LNil {
			return v
		}
	}
	switch key {
	case "type":
		return lDataType
	case "payload":
		return m.payload
	case "id":
		if m.id != "" {
			return lua.LString(m.id)
		}
	case "route":
		if m.route != "" {
			return lua.LString(m.route)
		}
	case "timestamp":
		if m.timestamp != 0 {
			return lua.LNumber(m.timestamp)
		}
	}
	return lua.LNil
}

// msgKeys are the fields of a message, in the order json.encode writes them.
var msgKeys = []string{"type", "id", "route", "timestamp", "payload"}

// newMsgMeta makes the metatable of msg objects: fields read as a table's
// would, and assigning one keeps the new value for the rest of the call.
func (st *luaState) newMsgMeta() *lua.LTable {
	meta := st.L.NewTable()
	meta.RawSetString("__index", st.L.NewFunction(func(L *lua.LState) int {
		m := L.CheckUserData(1).Value.(*msgObject)
		L.Push(m.get(L.CheckString(2)))
		return 1
	}))
	meta.RawSetString("__newindex", st.L.NewFunction(func(L *lua.LState) int {
		m := L.CheckUserData(1).Value.(*msgObject)
		key, v := L.CheckString(2), L.Get(3)
		if key == "payload" {
			m.payload = v
			return 0
		}
		if m.fields == nil {
			m.fields = L.NewTable()
		}
		m.fields.RawSetString(key, v)
		return 0
	}))
	meta.RawSetString("__tostring", st.L.NewFunction(func(L *lua.LState) int {
		m := L.CheckUserData(1).Value.(*msgObject)
		L.Push(lua.LString("msg " + m.id))
		return 1
	}))
	meta.RawSetString("__metatable", lua.LString("msg"))
	return meta
}

// AppendJSON encodes a msg object as a JSON object of its fields (for
// json.encode(msg)).
func (m *msgObject) AppendJSON(c *luabox.Converter, dst []byte, depth int) ([]byte, error) {
	t := c.L.CreateTable(0, len(msgKeys))
	for _, k := range msgKeys {
		t.RawSetString(k, m.get(k))
	}
	if m.fields != nil {
		for k, v := m.fields.Next(lua.LNil); k != lua.LNil; k, v = m.fields.Next(k) {
			t.RawSet(k, v)
		}
	}
	return c.AppendTable(dst, t, depth)
}
