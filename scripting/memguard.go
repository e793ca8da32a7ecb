package scripting

import (
	"errors"
	"runtime/metrics"
	"sync"
	"sync/atomic"
	"time"
)

// DefaultMemoryLimit is the Go heap size past which running handler calls
// are stopped.
const DefaultMemoryLimit = 1 << 30

// memoryPoll is how often the heap is checked while calls run.
const memoryPoll = 25 * time.Millisecond

// errMemoryLimit marks a call stopped because the heap grew past the limit.
var errMemoryLimit = errors.New("scripting: memory limit exceeded")

// guardedMemory are the runtime/metrics classes the guard adds up: the
// heap's live objects and the goroutine stacks (deep recursion in a Go
// library call grows a stack, not the heap).
var guardedMemory = []string{"/memory/classes/heap/objects:bytes", "/memory/classes/heap/stacks:bytes"}

// memoryGuard stops handler calls when the heap grows past a limit: a
// handler that builds tables without end would otherwise take the machine
// long before its deadline. gopher-lua has no allocation hook, so the guard
// samples the Go heap while calls run and, past the limit, stops every call
// in progress (it cannot tell which one allocates); their states are
// discarded and the memory comes back.
//
// It runs on timers only while calls are in flight: no goroutine to stop.
type memoryGuard struct {
	limit    uint64
	inflight atomic.Int64
	polling  atomic.Bool

	mu     sync.Mutex
	states map[*luaState]struct{} // every live state, to find the running ones
	sample []metrics.Sample
}

func newMemoryGuard(limit uint64) *memoryGuard {
	g := &memoryGuard{limit: limit, states: make(map[*luaState]struct{})}
	for _, name := range guardedMemory {
		g.sample = append(g.sample, metrics.Sample{Name: name})
	}
	return g
}

func (g *memoryGuard) add(st *luaState) {
	g.mu.Lock()
	g.states[st] = struct{}{}
	g.mu.Unlock()
}

func (g *memoryGuard) remove(st *luaState) {
	g.mu.Lock()
	delete(g.states, st)
	g.mu.Unlock()
}

// enter marks a call started and makes sure the heap is being watched.
func (g *memoryGuard) enter() {
	g.inflight.Add(1)
	if g.polling.CompareAndSwap(false, true) {
		time.AfterFunc(memoryPoll, g.poll)
	}
}

func (g *memoryGuard) exit() { g.inflight.Add(-1) }

// poll checks the heap, stops the running calls when it is past the
// limit, and reschedules itself while calls remain.
func (g *memoryGuard) poll() {
	g.mu.Lock()
	metrics.Read(g.sample)
	var used uint64
	for _, s := range g.sample {
		used += s.Value.Uint64()
	}
	if used > g.limit {
		for st := range g.states {
			if st.deadline.Running() {
				st.deadline.Stop(errMemoryLimit)
			}
		}
	}
	g.mu.Unlock()
	if g.inflight.Load() > 0 {
		time.AfterFunc(memoryPoll, g.poll)
		return
	}
	g.polling.Store(false)
	// A call that entered between the check and the store must be watched.
	if g.inflight.Load() > 0 && g.polling.CompareAndSwap(false, true) {
		time.AfterFunc(memoryPoll, g.poll)
	}
}
