package scripting

import (
	"sync"
	"testing"
	"time"
)

// TestStatePoolBoundsAndHandsOff: callers on many shards share two states;
// the pool never holds more than its bound, every caller gets a state (by
// hand-off when all are busy), and a caller that cannot get one in time
// gets nil.
func TestStatePoolBoundsAndHandsOff(t *testing.T) {
	const bound, callers, rounds = 2, 8, 500
	p := newStatePool(bound)
	var mu sync.Mutex
	inUse, peak := 0, 0
	held := map[*luaState]bool{}
	var wg sync.WaitGroup
	failures := make(chan string, callers)
	for c := range callers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			hint := uint64(c)
			for range rounds {
				st := p.take(hint)
				if st == nil && p.reserve() {
					st = &luaState{} // a new state, as generation.newState makes one
				}
				if st == nil {
					var mayMake bool
					if st, mayMake = p.wait(hint, 5*time.Second); mayMake {
						st = &luaState{}
					}
				}
				if st == nil {
					failures <- "no state within 5 s"
					return
				}
				mu.Lock()
				if held[st] {
					mu.Unlock()
					failures <- "one state handed to two callers at once"
					return
				}
				held[st] = true
				inUse++
				peak = max(peak, inUse)
				mu.Unlock()
				mu.Lock()
				delete(held, st)
				inUse--
				mu.Unlock()
				p.give(hint, st)
			}
		}()
	}
	wg.Wait()
	close(failures)
	for f := range failures {
		t.Fatal(f)
	}
	if n := p.alive.Load(); n > bound || peak > bound {
		t.Fatalf("%d states alive, %d in use at once; the bound is %d", n, peak, bound)
	}
	if got := len(p.drain()); int64(got) != p.alive.Load() {
		t.Fatalf("drained %d idle states, %d alive", got, p.alive.Load())
	}

	full := newStatePool(1)
	if !full.reserve() || full.reserve() {
		t.Fatal("reserve does not stop at the bound")
	}
	start := time.Now()
	if st, mayMake := full.wait(0, 50*time.Millisecond); st != nil || mayMake {
		t.Fatal("a full pool handed out a state")
	}
	if waited := time.Since(start); waited < 50*time.Millisecond {
		t.Fatalf("gave up after %v, before its timeout", waited)
	}
}

// TestStatePoolWakesWaitersWithoutPolling: 1,000 callers share 4 states
// that are given back to shards in bursts (no hand-off ready: the waiters
// are between looking and waiting) and closed now and then (room to make
// one): every caller gets a state well within its wait, though waiters
// only wake when something changes.
func TestStatePoolWakesWaitersWithoutPolling(t *testing.T) {
	const bound, callers = 4, 1000
	p := newStatePool(bound)
	var wg sync.WaitGroup
	failures := make(chan string, callers)
	for c := range callers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			st := p.take(uint64(c))
			if st == nil && p.reserve() {
				st = &luaState{}
			}
			if st == nil {
				var mayMake bool
				if st, mayMake = p.wait(uint64(c), 20*time.Second); mayMake {
					st = &luaState{}
				}
			}
			if st == nil {
				failures <- "a waiter was never woken"
				return
			}
			if c%7 == 0 {
				p.release() // closed: its room goes to a waiter
				return
			}
			p.give(uint64(c), st)
		}()
	}
	wg.Wait()
	close(failures)
	for f := range failures {
		t.Fatal(f)
	}
	if n := p.alive.Load(); n > bound {
		t.Fatalf("%d states alive, bound %d", n, bound)
	}
}
