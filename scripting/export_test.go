package scripting

import (
	"github.com/secureagentmessaging/samgw/protocol"
)

// echoOnly runs default.lua's on_data on msg the way callData does, without
// a connection: for benchmarks of the Lua call itself.
func (st *luaState) echoOnly(msg *protocol.Message) error {
	funcs := st.routes[defaultRoute]
	payload, err := st.conv.Decode(msg.Payload)
	if err != nil {
		return err
	}
	m := st.newMsg(msg, payload)
	if funcs.dataConn {
		conn := st.L.NewUserData()
		conn.Metatable = st.connMeta
		err = st.run(funcs.onData, 1, m, conn)
	} else {
		err = st.run(funcs.onData, 1, m)
	}
	if err != nil {
		return err
	}
	ret := st.L.Get(-1)
	st.L.Pop(1)
	st.buf, err = st.conv.Encode(st.buf[:0], ret)
	return err
}

// pendingTimers is how many timers of the serving generation wait to run.
func (e *Engine) pendingTimers() int { return e.current.Load().timers.pending() }
