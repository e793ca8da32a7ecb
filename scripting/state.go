package scripting

import (
	"cmp"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	lua "github.com/yuin/gopher-lua"

	"github.com/secureagentmessaging/samgw/gateway"
	"github.com/secureagentmessaging/samgw/internal/luabox"
	"github.com/secureagentmessaging/samgw/protocol"
)

// handlerFuncs are the functions one route's file defines.
type handlerFuncs struct {
	script     string // file name, for logs
	onData     *lua.LFunction
	dataConn   bool // on_data can see a second argument: only then does a call make its conn object
	onConnect  *lua.LFunction
	onClose    *lua.LFunction
	onStart    *lua.LFunction
	onNodeDown *lua.LFunction
	onJob      *lua.LFunction
}

// callInfo is what API functions need to know about the call in progress.
type callInfo struct {
	conn     *gateway.Conn // nil under samgw test
	peer     connPeer      // what conn objects of this call show: conn, or a test's
	script   string
	data     *connData
	state    lua.LValue    // conn.state as the script sees it, once touched
	touched  bool          // the script read or assigned conn.state
	upstream protocol.Code // set when an outbound or cluster call of this call failed, or a role refused one
	// background: a timer or on_start runs, for no connection; the gateway
	// module works on the server being served
	background bool
	// message: on_data handles a message of conn, whose roles the gateway
	// module checks (see actor)
	message bool
	timeout time.Duration // this call's bound; zero: the engine's Timeout
}

// luaState is one sandboxed Lua VM with every route of a generation loaded.
// It is used by one goroutine at a time and goes back to the pool of the
// generation it came from, unless a call broke it. Its mutex is held for
// every call: a timer's function lives in the state that made it and runs
// there, whether the state is idle in the pool or not (uncontended but
// for that).
type luaState struct {
	mu        sync.Mutex
	closed    bool // guarded by mu
	L         *lua.LState
	conv      *luabox.Converter
	gen       *generation
	routes    map[string]*handlerFuncs
	connMeta  *lua.LTable
	msgMeta   *lua.LTable
	modules   map[string]lua.LValue // results of require, by name
	kv        KV                    // behind the store module
	buf       []byte                // reply encoding buffer
	deadline  *luabox.CallDeadline  // the context of every call on this state
	broken    bool                  // a call overran its deadline: do not reuse
	ranStart  bool                  // on_start ran here: its timers live here
	abandoned atomic.Bool           // its timers were cancelled (see generation.abandon)
	call      callInfo
}

// newState builds a state for gen: sandboxed libraries, the script API,
// and every route's file run in an environment of its own.
func newState(gen *generation) (*luaState, error) {
	return newStateWith(gen, nil)
}

// newStateWith is newState with the test doubles of h in place of the
// gateway, http, upstream and nats modules, and h's store (h nil: the real
// ones).
func newStateWith(gen *generation, h *harness) (*luaState, error) {
	L := luabox.NewState()
	st := &luaState{L: L, gen: gen, conv: luabox.NewConverter(L), routes: make(map[string]*handlerFuncs, len(gen.routes)),
		modules: make(map[string]lua.LValue), deadline: luabox.NewCallDeadline(), kv: gen.engine.kv}
	L.SetContext(st.deadline)
	gen.engine.watch.add(st)
	st.registerAPI()
	st.registerUpstreamAPI()
	st.registerTimerAPI()
	st.registerQueueAPI()
	if h != nil {
		h.register(st)
	}
	config := lua.LValue(L.NewTable())
	if gen.config != nil {
		v, err := st.conv.DecodeUntrusted(gen.config)
		if err != nil {
			st.close()
			return nil, fmt.Errorf("script config: %w", err)
		}
		config = v
	}
	L.SetGlobal("config", config) // sealed below with the rest: read-only
	luabox.Seal(L)
	st.connMeta = st.newConnMeta()
	st.msgMeta = st.newMsgMeta()
	for name, proto := range gen.routes {
		funcs, err := st.loadRoute(name, proto)
		if err != nil {
			st.close()
			return nil, err
		}
		st.routes[name] = funcs
	}
	return st, nil
}

// loadRoute runs a route's file in a fresh environment (whose globals fall
// back to the shared ones) and collects its handler functions.
func (st *luaState) loadRoute(name string, proto *lua.FunctionProto) (*handlerFuncs, error) {
	file := name + ".lua"
	env := luabox.NewEnv(st.L)
	fn := st.L.NewFunctionFromProto(proto)
	fn.Env = env
	st.call = callInfo{script: file}
	defer func() { st.call = callInfo{} }()
	if err := st.run(fn, 0); err != nil {
		return nil, &FileError{File: file, Err: fmt.Errorf("%s: %w", file, err)}
	}
	funcs := &handlerFuncs{script: file}
	var ok bool
	if funcs.onData, ok = env.RawGetString("on_data").(*lua.LFunction); !ok {
		return nil, &FileError{File: file, Err: fmt.Errorf("%s: %w", file, ErrNoOnData)}
	}
	funcs.dataConn = seesArgument(funcs.onData, 2)
	funcs.onConnect, _ = env.RawGetString("on_connect").(*lua.LFunction)
	funcs.onClose, _ = env.RawGetString("on_close").(*lua.LFunction)
	funcs.onStart, _ = env.RawGetString("on_start").(*lua.LFunction)
	funcs.onNodeDown, _ = env.RawGetString("on_node_down").(*lua.LFunction)
	funcs.onJob, _ = env.RawGetString("on_job").(*lua.LFunction)
	return funcs, nil
}

// seesArgument reports whether fn can see its n-th argument: it declares n
// parameters, takes varargs, or is a Go function.
func seesArgument(fn *lua.LFunction, n int) bool {
	return fn.Proto == nil || fn.Proto.IsVarArg != 0 || int(fn.Proto.NumParameters) >= n
}

// run calls fn with args under the engine's timeout, leaving nret results
// on the stack. Script errors come back as *scriptError; a call cut off by
// the deadline as errTimeout. A state whose deadline fired is marked broken.
func (st *luaState) run(fn *lua.LFunction, nret int, args ...lua.LValue) error {
	st.deadline.Arm(cmp.Or(st.call.timeout, st.gen.engine.timeout))
	st.gen.engine.watch.watch() // after Arm: see watchdog.poll
	err := st.L.CallByParam(lua.P{Fn: fn, NRet: nret, Protect: true}, args...)
	inTime := st.deadline.Disarm()
	if !inTime {
		st.broken = true
		if err != nil {
			if errors.Is(st.deadline.StoppedBy(), errMemoryLimit) {
				return &scriptError{text: "stopped: the gateway's memory limit was exceeded while handlers ran"}
			}
			return errTimeout
		}
	}
	if err != nil {
		return scriptErrorOf(err)
	}
	return nil
}

// scriptErrorOf is the error a failed call reports. A string (or number)
// raised is its text, with the file:line Lua adds; error{code = C,
// message = M} with a valid application code is C and M, for the client
// as they are; any other value (a table without a valid code, a function,
// a userdata) becomes a message naming its type, never its text
// (tostring of a table is its heap address).
func scriptErrorOf(err error) *scriptError {
	var ae *lua.ApiError
	if !errors.As(err, &ae) || ae.Object == nil {
		return &scriptError{text: err.Error()}
	}
	switch v := ae.Object.(type) {
	case lua.LString, lua.LNumber:
		return &scriptError{text: luabox.ErrorText(err)}
	case *lua.LTable:
		code, _ := v.RawGetString("code").(lua.LString)
		message, _ := v.RawGetString("message").(lua.LString)
		if code == "" && message == "" {
			break
		}
		if !protocol.ValidAppCode(string(code)) {
			return &scriptError{text: fmt.Sprintf("error{code = %q}: not a valid error code (lowercase letters, digits and _, at most %d, not one of the protocol's own)",
				truncate(string(code), protocol.MaxAppCodeLen), protocol.MaxAppCodeLen)}
		}
		return &scriptError{code: protocol.Code(code), text: truncate(string(message), maxErrorMessage),
			audit: v.RawGetString("audit") == lua.LTrue}
	}
	return &scriptError{text: "the handler raised a " + ae.Object.Type().String() +
		` value: raise error("text") or error({code = "…", message = "…"})`}
}

// maxErrorMessage bounds the message of an application's coded error.
const maxErrorMessage = 1024

// close releases the state's VM, once a timer running on it is done.
func (st *luaState) close() {
	st.mu.Lock()
	st.closed = true
	st.mu.Unlock()
	st.gen.engine.watch.remove(st)
	st.L.Close()
}

// scriptError is an error a script raised (or a runtime error in it): code
// is the application's own error code (error{code = …}), or "" for
// handler_error.
type scriptError struct {
	code  protocol.Code
	text  string
	audit bool // error{…, audit = true}: the refusal goes to the audit log
}

func (e *scriptError) Error() string { return e.text }

// errTimeout marks a call stopped by its deadline.
var errTimeout = errors.New("scripting: handler timed out")
