package scripting

import (
	"runtime"
	"sync"
	"sync/atomic"
	"time"
)

// statePool holds a generation's idle Lua states. A single channel served
// every call on every core and was the gateway's hottest lock (97% of mutex
// delay on 8 cores); the pool is sharded instead: a connection takes and
// returns states on its own shard (chosen by a hint fixed per connection),
// so connections on different shards never meet, and only an empty shard
// looks at the others. When every state is busy and no more may be made,
// callers wait on a hand-off channel, which put serves first while anyone
// waits. Waiters never poll: thousands of them waking every millisecond
// to rescan were the whole CPU of a reconnect herd.
type statePool struct {
	shards  []poolShard
	mask    uint64
	max     int64
	alive   atomic.Int64 // states made and not closed, idle or in a call
	waiting atomic.Int32 // callers in wait
	handoff chan *luaState
	// notify wakes one waiter to look again: a state went to a shard while
	// a waiter was between looking and waiting, or one was closed (room to
	// make another). A waiter that then gets one passes the wake on, so
	// several such states reach several waiters.
	notify chan struct{}
}

// poolShard is one shard's idle states, padded so that shards do not share
// a cache line.
type poolShard struct {
	mu     sync.Mutex
	states []*luaState
	_      [32]byte
}

func newStatePool(max int) *statePool {
	n := 1
	for n < 4*runtime.GOMAXPROCS(0) {
		n <<= 1
	}
	return &statePool{shards: make([]poolShard, n), mask: uint64(n - 1), max: int64(max), handoff: make(chan *luaState),
		notify: make(chan struct{}, 1)}
}

// take returns an idle state, from the hint's shard first, or nil.
func (p *statePool) take(hint uint64) *luaState {
	for i := range uint64(len(p.shards)) {
		s := &p.shards[(hint+i)&p.mask]
		s.mu.Lock()
		if n := len(s.states); n > 0 {
			st := s.states[n-1]
			s.states[n-1] = nil
			s.states = s.states[:n-1]
			s.mu.Unlock()
			return st
		}
		s.mu.Unlock()
	}
	return nil
}

// give returns a state: to a waiting caller if there is one, else to the
// hint's shard.
func (p *statePool) give(hint uint64, st *luaState) {
	if p.waiting.Load() > 0 {
		select {
		case p.handoff <- st:
			return
		default:
		}
	}
	s := &p.shards[hint&p.mask]
	s.mu.Lock()
	s.states = append(s.states, st)
	s.mu.Unlock()
	if p.waiting.Load() > 0 {
		p.wake()
	}
}

// wake makes one waiter look again (if none is waking already).
func (p *statePool) wake() {
	select {
	case p.notify <- struct{}{}:
	default:
	}
}

// reserve counts a state about to be made, if the pool may grow.
func (p *statePool) reserve() bool {
	for {
		n := p.alive.Load()
		if n >= p.max {
			return false
		}
		if p.alive.CompareAndSwap(n, n+1) {
			return true
		}
	}
}

// release uncounts a state that was closed (or never made): a waiter may
// make one now.
func (p *statePool) release() {
	p.alive.Add(-1)
	if p.waiting.Load() > 0 {
		p.wake()
	}
}

// wait waits up to timeout for a state: handed off by give, found in a
// shard, or room to make one (then it returns nil, true).
func (p *statePool) wait(hint uint64, timeout time.Duration) (st *luaState, mayMake bool) {
	p.waiting.Add(1)
	defer p.waiting.Add(-1)
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	woken := false
	for {
		if st := p.take(hint); st != nil {
			if woken {
				p.wake() // there may be more: the next waiter looks too
			}
			return st, false
		}
		if p.reserve() {
			if woken {
				p.wake()
			}
			return nil, true
		}
		select {
		case st := <-p.handoff:
			return st, false
		case <-p.notify:
			woken = true
		case <-deadline.C:
			return nil, false
		}
	}
}

// drain removes and returns every idle state.
func (p *statePool) drain() []*luaState {
	var out []*luaState
	for i := range p.shards {
		s := &p.shards[i]
		s.mu.Lock()
		out = append(out, s.states...)
		s.states = nil
		s.mu.Unlock()
	}
	return out
}
