package scripting

import (
	"errors"

	lua "github.com/yuin/gopher-lua"

	"github.com/secureagentmessaging/samgw/access"
	"github.com/secureagentmessaging/samgw/gateway"
	"github.com/secureagentmessaging/samgw/protocol"
)

// actor is the connection whose roles the gateway module checks: the
// sender of the message being handled. Calls that handle no message
// (on_start, timers, on_connect, on_close, on_node_down) act as the
// server and are not checked: nil.
func (st *luaState) actor() *gateway.Conn {
	if st.call.message {
		return st.call.conn
	}
	return nil
}

// check raises an error with code forbidden (when the script lets it
// escape) if c may not do the action; c nil is the server, never refused.
// The gateway counts and audits the refusal.
func (st *luaState) check(what string, c *gateway.Conn, kind access.Kind, target string) {
	if c == nil {
		return
	}
	err := c.Check(kind, target)
	if err == nil {
		return
	}
	text := err.Error()
	var pe *protocol.Error
	if errors.As(err, &pe) {
		text = pe.Message
	}
	st.call.upstream = protocol.CodeForbidden
	st.L.RaiseError("%s: %s", what, text)
}

// connRoles is conn.roles: a new table each time, so a script cannot
// change what the gateway checks.
func (st *luaState) connRoles(c connPeer) *lua.LTable {
	roles := c.Roles()
	t := st.L.CreateTable(len(roles), 0)
	for i, r := range roles {
		t.RawSetInt(i+1, lua.LString(r))
	}
	return t
}

// connCan is conn.can(kind, target) → boolean (conn:can works too).
func (st *luaState) connCan(c connPeer) *lua.LFunction {
	return st.L.NewFunction(func(L *lua.LState) int {
		n := 1
		if ud, ok := L.Get(1).(*lua.LUserData); ok && ud.Value == c {
			n = 2 // called as conn:can(kind, target)
		}
		kind, ok := access.ParseKind(L.CheckString(n))
		if !ok {
			L.ArgError(n, `want "route", "publish", "subscribe", "send_to", "push" or "join"`)
		}
		L.Push(lua.LBool(c.Can(kind, L.CheckString(n+1))))
		return 1
	})
}
