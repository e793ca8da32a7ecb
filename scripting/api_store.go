package scripting

import (
	"errors"
	"fmt"
	"time"

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
	raw, err := st.kv.Get(st.deadline, L.CheckString(1))
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

// store.set(key, value[, {ttl_ms = N}]); a nil value deletes the key.
func (st *luaState) apiStoreSet(L *lua.LState) int {
	key := L.CheckString(1)
	ttl := storeTTL(L, 3)
	var err error
	if L.Get(2) == lua.LNil {
		err = st.kv.Delete(st.deadline, key)
	} else {
		err = st.kv.Set(st.deadline, key, st.payloadArg(2), ttl)
	}
	if err != nil {
		st.storeFailure("store.set", err)
	}
	return 0
}

// store.delete(key)
func (st *luaState) apiStoreDelete(L *lua.LState) int {
	if err := st.kv.Delete(st.deadline, L.CheckString(1)); err != nil {
		st.storeFailure("store.delete", err)
	}
	return 0
}

// Bounds of store.keys: how many keys it returns by default, and at most.
const (
	defaultKeysLimit = 100
	maxKeysLimit     = 1000
)

// store.keys(prefix[, limit]) → sorted array of the live keys with prefix
func (st *luaState) apiStoreKeys(L *lua.LState) int {
	prefix := L.CheckString(1)
	limit := L.OptInt(2, defaultKeysLimit)
	if limit < 1 || limit > maxKeysLimit {
		L.ArgError(2, fmt.Sprintf("limit must be 1 to %d", maxKeysLimit))
	}
	keys, err := st.kv.Keys(st.deadline, prefix, limit)
	if err != nil {
		st.storeFailure("store.keys", err)
	}
	t := st.L.CreateTable(len(keys), 0)
	for _, k := range keys {
		t.Append(lua.LString(k))
	}
	L.Push(t)
	return 1
}

// store.incr(key[, n]) → the new number
func (st *luaState) apiStoreIncr(L *lua.LState) int {
	v, err := st.kv.Incr(st.deadline, L.CheckString(1), float64(L.OptNumber(2, 1)))
	if err != nil {
		st.storeFailure("store.incr", err)
	}
	L.Push(lua.LNumber(v))
	return 1
}

// MaxStoreTTL bounds a store value's time to live.
const MaxStoreTTL = 365 * 24 * time.Hour

// storeTTL reads the {ttl_ms = N} options at argument n: 0 without them.
func storeTTL(L *lua.LState, n int) time.Duration {
	opts, ok := L.Get(n).(*lua.LTable)
	if !ok {
		if L.Get(n) != lua.LNil {
			L.ArgError(n, "options table expected")
		}
		return 0
	}
	v := opts.RawGetString("ttl_ms")
	if v == lua.LNil {
		return 0
	}
	ms, ok := v.(lua.LNumber)
	if !ok || ms <= 0 || float64(ms) > float64(MaxStoreTTL/time.Millisecond) {
		L.ArgError(n, fmt.Sprintf("ttl_ms must be a number of milliseconds between 1 and %d", MaxStoreTTL/time.Millisecond))
	}
	return time.Duration(float64(ms) * float64(time.Millisecond))
}

// store.cas(key, old, new[, {ttl_ms = N}]) → whether key held old (nil:
// absent) and now holds new (nil: deleted).
func (st *luaState) apiStoreCAS(L *lua.LState) int {
	key := L.CheckString(1)
	var old, value []byte
	if L.Get(2) != lua.LNil {
		old = st.payloadArg(2)
	}
	if L.Get(3) != lua.LNil {
		value = st.payloadArg(3)
	}
	ok, err := st.kv.CAS(st.deadline, key, old, value, storeTTL(L, 4))
	if err != nil {
		st.storeFailure("store.cas", err)
	}
	L.Push(lua.LBool(ok))
	return 1
}
