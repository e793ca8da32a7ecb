package scripting

import (
	"errors"

	lua "github.com/yuin/gopher-lua"
)

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
