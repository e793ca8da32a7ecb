package scripting

import (
	"errors"
	"fmt"
	"sync"
	"time"

	lua "github.com/yuin/gopher-lua"

	"github.com/secureagentmessaging/samgw/internal/luabox"
)

// Timer bounds: a script cannot make the gateway spend without limit.
const (
	// DefaultMaxTimers bounds the pending timers of a generation (like
	// OpenResty's lua_max_pending_timers).
	DefaultMaxTimers = 1024
	// DefaultMaxTimersPerConn bounds the pending timers made by the calls
	// of one connection, so one connection cannot take them all.
	DefaultMaxTimersPerConn = 16
	// MinTimerInterval is the shortest period of timer.every.
	MinTimerInterval = 10 * time.Millisecond
	// MaxTimerDelay is the longest delay or period of a timer.
	MaxTimerDelay = 365 * 24 * time.Hour
)

// ErrTooManyTimers is raised by timer.after and timer.every when the
// generation has DefaultMaxTimers (Config.MaxTimers) pending already.
var ErrTooManyTimers = errors.New("scripting: too many pending timers")

// ErrTooManyConnTimers is raised by timer.after and timer.every in a call
// for a connection whose calls made DefaultMaxTimersPerConn
// (Config.MaxTimersPerConn) timers still pending.
var ErrTooManyConnTimers = errors.New("scripting: too many pending timers for one connection")

// timerClock schedules timer runs: real time when serving, a clock the test
// moves by hand under `samgw test`. The function it returns stops the run
// and reports whether it did.
type timerClock interface {
	AfterFunc(d time.Duration, f func()) (stop func() bool)
}

// realClock is the wall clock.
type realClock struct{}

func (realClock) AfterFunc(d time.Duration, f func()) func() bool { return time.AfterFunc(d, f).Stop }

// luaTimer is one timer.after or timer.every. Its function lives in the Lua
// state that created it, so it runs there, holding the state's mutex like
// a call, whether the state is idle in the pool or not.
type luaTimer struct {
	set    *timerSet
	st     *luaState
	fn     *lua.LFunction
	handle *lua.LUserData // what the script holds, passed to fn
	every  time.Duration  // 0: runs once
	where  string         // file:line of the call that made it, for logs
	owner  string         // id of the connection whose call made it; "" for on_start and timers

	// guarded by set.mu
	stop      func() bool
	cancelled bool
}

// timerSet is the timers of one generation: bounded in number, all stopped
// when the generation is replaced or the server stops serving.
type timerSet struct {
	gen        *generation
	clock      timerClock
	max        int
	maxPerConn int
	inline     bool // under samgw test: runs happen inside the test's own call
	// failed, when set, is told of a failed run instead of the log (samgw
	// test fails the test)
	failed func(t *luaTimer, err error)

	mu      sync.Mutex
	live    map[*luaTimer]struct{}
	perConn map[string]int // pending timers by owner, for owners that have some
	stopped bool
	running sync.WaitGroup // runs in progress, waited for by stop
}

func newTimerSet(gen *generation, clock timerClock, max, maxPerConn int) *timerSet {
	return &timerSet{gen: gen, clock: clock, max: max, maxPerConn: maxPerConn,
		live: make(map[*luaTimer]struct{}), perConn: make(map[string]int)}
}

// dropLocked takes t off the pending timers; s.mu is held.
func (s *timerSet) dropLocked(t *luaTimer) {
	t.cancelled = true
	delete(s.live, t)
	if t.owner != "" {
		if s.perConn[t.owner]--; s.perConn[t.owner] <= 0 {
			delete(s.perConn, t.owner)
		}
	}
}

// add schedules t after delay.
func (s *timerSet) add(t *luaTimer, delay time.Duration) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopped {
		return errors.New("the scripts that made this timer were replaced, or the server is stopping")
	}
	if len(s.live) >= s.max {
		return fmt.Errorf("%w: %d", ErrTooManyTimers, s.max)
	}
	if t.owner != "" && s.perConn[t.owner] >= s.maxPerConn {
		return fmt.Errorf("%w: %d", ErrTooManyConnTimers, s.maxPerConn)
	}
	s.live[t] = struct{}{}
	if t.owner != "" {
		s.perConn[t.owner]++
	}
	t.stop = s.clock.AfterFunc(delay, t.fire)
	return nil
}

// cancel stops t; it reports whether t was still pending.
func (s *timerSet) cancel(t *luaTimer) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if t.cancelled {
		return false
	}
	s.dropLocked(t)
	if t.stop != nil {
		t.stop()
	}
	return true
}

// cancelState cancels the timers whose functions live in st, which is
// being thrown away, and returns them.
func (s *timerSet) cancelState(st *luaState) []*luaTimer {
	s.mu.Lock()
	defer s.mu.Unlock()
	var gone []*luaTimer
	for t := range s.live {
		if t.st == st {
			s.dropLocked(t)
			t.stop()
			gone = append(gone, t)
		}
	}
	return gone
}

// stop cancels every timer and waits for runs in progress; no timer runs
// or starts afterwards.
func (s *timerSet) stop() {
	s.mu.Lock()
	s.stopped = true
	for t := range s.live {
		t.cancelled = true
		t.stop()
	}
	clear(s.live)
	clear(s.perConn)
	s.mu.Unlock()
	s.running.Wait()
}

// pending is how many timers wait to run.
func (s *timerSet) pending() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.live)
}

// fire runs t's function on its state, then schedules the next run of a
// timer.every (its period after this run ended: runs never overlap).
func (t *luaTimer) fire() {
	s := t.set
	s.mu.Lock()
	if t.cancelled || s.stopped {
		s.mu.Unlock()
		return
	}
	if t.every == 0 {
		s.dropLocked(t) // a one-shot is spent once it fires
	}
	s.running.Add(1)
	s.mu.Unlock()
	defer s.running.Done()

	broken, err := t.st.runTimer(t)
	if err != nil && s.failed != nil {
		s.failed(t, err)
	} else if err != nil {
		s.gen.engine.log.Error("Timer failed", "script", scriptOf(t.where), "timer", t.where, "generation", s.gen.number, "error", s.gen.redacted(timerErrorText(err)))
	}
	if broken {
		s.gen.abandon(t.st)
		return
	}
	if t.every > 0 {
		s.mu.Lock()
		if !t.cancelled && !s.stopped {
			t.stop = s.clock.AfterFunc(t.every, t.fire)
		}
		s.mu.Unlock()
	}
}

func timerErrorText(err error) string {
	if errors.Is(err, errTimeout) {
		return "timed out"
	}
	return err.Error()
}

// runTimer runs a timer's function on st, once no call uses st. It reports
// whether the run broke st (it overran its deadline), and the run's error.
func (st *luaState) runTimer(t *luaTimer) (broken bool, err error) {
	if t.set.inline {
		return false, st.runNested(t.fn, t.handle)
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.closed || st.broken {
		return st.broken, nil
	}
	st.call = callInfo{script: scriptOf(t.where), background: true}
	defer st.end()
	err = st.run(t.fn, 0, t.handle)
	return st.broken, err
}

// runNested calls fn inside the call in progress on st (the test's), with
// the call's context: `samgw test` moves its clock from a test function.
func (st *luaState) runNested(fn *lua.LFunction, args ...lua.LValue) error {
	saved := st.call
	st.call = callInfo{script: saved.script, background: true}
	defer func() { st.call = saved }()
	if err := st.L.CallByParam(lua.P{Fn: fn, NRet: 0, Protect: true}, args...); err != nil {
		return &scriptError{text: luabox.ErrorText(err)}
	}
	return nil
}

// scriptOf is the file part of a file:line position.
func scriptOf(where string) string {
	for i := len(where) - 1; i >= 0; i-- {
		if where[i] == ':' {
			return where[:i]
		}
	}
	return where
}

// registerTimerAPI installs timer.after(ms, fn) and timer.every(ms, fn),
// which return a handle with :cancel().
func (st *luaState) registerTimerAPI() {
	L := st.L
	meta := L.NewTable()
	methods := st.module(map[string]lua.LGFunction{
		"cancel": func(L *lua.LState) int {
			t, ok := L.CheckUserData(1).Value.(*luaTimer)
			if !ok {
				L.ArgError(1, "timer expected")
			}
			L.Push(lua.LBool(t.set.cancel(t)))
			return 1
		},
	})
	meta.RawSetString("__index", methods)
	meta.RawSetString("__metatable", lua.LString("timer"))
	meta.RawSetString("__tostring", L.NewFunction(func(L *lua.LState) int {
		t, _ := L.CheckUserData(1).Value.(*luaTimer)
		L.Push(lua.LString("timer " + t.where))
		return 1
	}))
	start := func(every bool) lua.LGFunction {
		return func(L *lua.LState) int {
			ms := L.CheckNumber(1)
			fn := L.CheckFunction(2)
			if st.call.peer == nil && !st.call.background {
				L.RaiseError("timer: no timers while a script loads (a reload would leave them behind): make them in on_start or a handler")
			}
			d := time.Duration(float64(ms) * float64(time.Millisecond))
			switch {
			case ms != ms || d < 0 || d > MaxTimerDelay:
				L.ArgError(1, fmt.Sprintf("a delay from 0 to %v in milliseconds expected", MaxTimerDelay))
			case every && d < MinTimerInterval:
				L.ArgError(1, fmt.Sprintf("timer.every needs a period of at least %d ms", MinTimerInterval.Milliseconds()))
			}
			t := &luaTimer{set: st.gen.timers, st: st, fn: fn, where: callerPosition(L)}
			if st.call.peer != nil && !st.call.background {
				t.owner = st.call.peer.ID() // counts against that connection's share
			}
			if every {
				t.every = d
			}
			t.handle = L.NewUserData()
			t.handle.Value = t
			t.handle.Metatable = meta
			if err := t.set.add(t, d); err != nil {
				L.RaiseError("timer: %s", err)
			}
			L.Push(t.handle)
			return 1
		}
	}
	L.SetGlobal("timer", st.module(map[string]lua.LGFunction{"after": start(false), "every": start(true)}))
}

// callerPosition is "file:line" of the Lua code calling the Go function
// running now.
func callerPosition(L *lua.LState) string {
	where := L.Where(1)
	if len(where) > 0 && where[len(where)-1] == ':' {
		where = where[:len(where)-1]
	}
	if where == "" {
		return "?"
	}
	return where
}
