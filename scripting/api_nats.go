package scripting

import (
	"errors"

	lua "github.com/yuin/gopher-lua"
)

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
