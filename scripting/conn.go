package scripting

import (
	"fmt"

	lua "github.com/yuin/gopher-lua"

	"github.com/secureagentmessaging/samgw/access"
)

// connPeer is what a conn object shows of its connection: a real one, or
// one that a `samgw test` made up.
type connPeer interface {
	ID() string
	RemoteAddr() string
	Transport() string
	Identity() string
	Roles() []string
	Can(kind access.Kind, target string) bool
}

// newConnMeta makes the metatable of conn objects. conn.state is
// materialised from its Go-side copy on first use in a call and saved back
// after it, so it survives pooling and reloads; only JSON data fits in it.
func (st *luaState) newConnMeta() *lua.LTable {
	meta := st.L.NewTable()
	meta.RawSetString("__index", st.L.NewFunction(func(L *lua.LState) int {
		c, _ := L.CheckUserData(1).Value.(connPeer)
		switch L.CheckString(2) {
		case "id":
			L.Push(lua.LString(c.ID()))
		case "remote":
			L.Push(lua.LString(c.RemoteAddr()))
		case "transport":
			L.Push(lua.LString(c.Transport()))
		case "identity":
			if id := c.Identity(); id != "" {
				L.Push(lua.LString(id))
			} else {
				L.Push(lua.LNil)
			}
		case "state":
			L.Push(st.connState(c))
		case "roles":
			L.Push(st.connRoles(c))
		case "can":
			L.Push(st.connCan(c))
		default:
			L.Push(lua.LNil)
		}
		return 1
	}))
	meta.RawSetString("__newindex", st.L.NewFunction(func(L *lua.LState) int {
		c, _ := L.CheckUserData(1).Value.(connPeer)
		if key := L.CheckString(2); key != "state" {
			L.RaiseError("conn.%s is read-only", key)
		}
		st.checkCall(c)
		st.call.state, st.call.touched = L.Get(3), true
		return 0
	}))
	meta.RawSetString("__tostring", st.L.NewFunction(func(L *lua.LState) int {
		c, _ := L.CheckUserData(1).Value.(connPeer)
		L.Push(lua.LString("conn " + c.ID()))
		return 1
	}))
	meta.RawSetString("__metatable", lua.LString("conn"))
	return meta
}

// checkCall raises an error when a conn object is used for its state
// outside a call for its connection.
func (st *luaState) checkCall(c connPeer) {
	if c == nil || st.call.peer != c {
		st.L.RaiseError("conn.state is only available in a call for that connection")
	}
}

// connState returns conn.state for the call in progress.
func (st *luaState) connState(c connPeer) lua.LValue {
	st.checkCall(c)
	if st.call.touched {
		return st.call.state
	}
	state := lua.LValue(st.L.NewTable())
	d := st.call.data
	d.mu.Lock()
	raw := d.state
	d.mu.Unlock()
	if raw != nil {
		v, err := st.conv.Decode(raw)
		if err != nil {
			st.L.RaiseError("conn.state: %s", err)
		}
		state = v
	}
	st.call.state, st.call.touched = state, true
	return state
}

// saveState stores conn.state back Go-side if the call touched it.
func (st *luaState) saveState() error {
	if !st.call.touched {
		return nil
	}
	d := st.call.data
	if st.call.state == lua.LNil {
		d.mu.Lock()
		d.state = nil
		d.mu.Unlock()
		return nil
	}
	out, err := st.conv.Encode(nil, st.call.state)
	if err != nil {
		return &scriptError{text: "conn.state can hold only JSON data: " + err.Error()}
	}
	if limit := st.gen.engine.maxState; len(out) > limit {
		return &scriptError{text: fmt.Sprintf("conn.state is %d bytes as JSON, more than the %d a connection may keep; it was not saved", len(out), limit)}
	}
	d.mu.Lock()
	d.state = out
	d.mu.Unlock()
	return nil
}

// DefaultConnStateMaxBytes bounds a connection's conn.state when no bound
// is configured: it is kept per connection, so ten thousand connections at
// the 16 MiB string limit each would be 160 GiB.
const DefaultConnStateMaxBytes = 64 << 10
