package scripting

import (
	"context"
	"errors"
	"runtime"
	"runtime/metrics"
	"sync"
	"sync/atomic"
	"time"
)

// DefaultMemoryLimit is the Go heap size past which running handler calls
// are stopped.
const DefaultMemoryLimit = 1 << 30

// watchPeriod is how often the watchdog looks at the running calls (their
// deadlines, the heap) while any run: a call overruns its timeout by at
// most this much.
const watchPeriod = 10 * time.Millisecond

// errMemoryLimit marks a call stopped because the heap grew past the limit.
var errMemoryLimit = errors.New("scripting: memory limit exceeded")

// guardedMemory are the runtime/metrics classes the guard adds up: the
// heap's live objects and the goroutine stacks (deep recursion in a Go
// library call grows a stack, not the heap).
var guardedMemory = []string{"/memory/classes/heap/objects:bytes", "/memory/classes/heap/stacks:bytes"}

// watchdog stops handler calls that run past their deadline or while the
// heap grows past a limit. Deadlines: each state's CallDeadline is armed by
// an atomic store, no timer per call, and the watchdog stops the overdue
// ones. Memory: a handler that builds tables without end would take the
// machine long before its deadline, and gopher-lua has no allocation hook,
// so the watchdog samples the heap and goroutine stacks and, past the
// limit, stops every call in progress (it cannot tell which one
// allocates); their states are discarded and a collection brings the
// memory back before the next look, so their garbage stops no other call.
//
// It runs on timers only while calls are in flight: no goroutine to stop.
type watchdog struct {
	limit   uint64
	polling atomic.Bool // read by every call, written only when polling starts or stops

	mu        sync.Mutex
	states    map[*luaState]struct{} // every live state, to find the running ones
	stopped   []*luaState            // stopped for memory, not yet discarded
	stoppedAt time.Time              // when the last of them was stopped

	sampleMu sync.Mutex // guards sample
	sample   []metrics.Sample
}

func newWatchdog(limit uint64) *watchdog {
	g := &watchdog{limit: limit, states: make(map[*luaState]struct{})}
	for _, name := range guardedMemory {
		g.sample = append(g.sample, metrics.Sample{Name: name})
	}
	return g
}

func (g *watchdog) add(st *luaState) {
	g.mu.Lock()
	g.states[st] = struct{}{}
	g.mu.Unlock()
}

func (g *watchdog) remove(st *luaState) {
	g.mu.Lock()
	delete(g.states, st)
	g.mu.Unlock()
}

// watch makes sure a call whose deadline was just armed is watched. Calls
// share no counter: the common case is one read of a flag that only changes
// when polling starts or stops.
func (g *watchdog) watch() {
	if !g.polling.Load() && g.polling.CompareAndSwap(false, true) {
		time.AfterFunc(watchPeriod, g.poll)
	}
}

// poll stops the overdue calls, and every running call when the heap is
// past the limit, and reschedules itself while calls remain.
//
// The heap counts garbage until the collector frees it: the strings a
// runaway built stay counted after it was stopped, and counted against the
// calls that ran next they stopped innocent ones too (219 of 560 over 3 to
// 4 s after one runaway). So while calls stopped for memory are still
// ending no other call is stopped for memory unless the heap passes twice
// the limit, and once they have ended (their states discarded) a
// collection runs before the heap is looked at again.
func (g *watchdog) poll() {
	g.mu.Lock()
	now := time.Now()
	ending := g.stopped[:0]
	for _, st := range g.stopped {
		// A stopped call's state is discarded (closed, and removed from
		// states) once the call has ended: until then it holds its memory.
		// One whose call had ended just before it was stopped is not
		// discarded; it stops counting once it is idle and stopGrace has
		// passed.
		_, open := g.states[st]
		if open && (st.deadline.Running() || now.Sub(g.stoppedAt) < stopGrace) {
			ending = append(ending, st)
		}
	}
	collect := len(g.stopped) > 0 && len(ending) == 0
	g.stopped = ending
	g.mu.Unlock()
	if collect {
		runtime.GC() // the stopped calls' garbage goes before the next look
	}
	overLimit := false
	if !collect {
		// While stopped calls are still ending, what is over the limit is
		// theirs: only twice the limit stops the others (a stopped call
		// stuck in a long Go call must not leave the heap unguarded).
		limit := g.limit
		if len(ending) > 0 {
			limit *= 2
		}
		overLimit = g.used() > limit
	}
	g.mu.Lock()
	running := false
	for st := range g.states {
		switch {
		case overLimit && st.deadline.Running():
			st.deadline.Stop(errMemoryLimit)
			g.stopped = append(g.stopped, st)
			g.stoppedAt = now
		case st.deadline.Overdue(now.UnixNano()):
			st.deadline.Stop(context.DeadlineExceeded)
		}
		running = running || st.deadline.Running()
	}
	pending := len(g.stopped) > 0
	g.mu.Unlock()
	if running || pending {
		time.AfterFunc(watchPeriod, g.poll)
		return
	}
	g.polling.Store(false)
	// A call arms its deadline before it looks at polling: one that saw
	// polling still true is running now, and this second look finds it.
	if g.anyRunning() && g.polling.CompareAndSwap(false, true) {
		time.AfterFunc(watchPeriod, g.poll)
	}
}

// stopGrace is how long an idle state stopped for memory counts as
// ending before the watchdog stops waiting for it to be discarded.
const stopGrace = time.Second

// used reads the guarded memory: heap objects (live, and dead ones not
// yet swept) and goroutine stacks.
func (g *watchdog) used() uint64 {
	g.sampleMu.Lock()
	defer g.sampleMu.Unlock()
	metrics.Read(g.sample)
	var used uint64
	for _, s := range g.sample {
		used += s.Value.Uint64()
	}
	return used
}

func (g *watchdog) anyRunning() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	for st := range g.states {
		if st.deadline.Running() {
			return true
		}
	}
	return false
}
