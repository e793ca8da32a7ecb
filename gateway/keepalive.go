package gateway

import (
	"sync"
	"sync/atomic"
	"time"
)

// keepAliveScheduler sends the periodic keepalive frames of all of a
// server's connections from one goroutine, instead of a ticker and a
// goroutine per connection. Every connection has the same interval, so a
// FIFO ordered by due time is the whole timer wheel: a tick pops the
// connections that are due, queues their keepalive and appends them again
// one interval later. Closed connections fall out when their turn comes.
// It also moves the readers of quiet connections to fresh goroutines.
type keepAliveScheduler struct {
	interval time.Duration
	tick     time.Duration
	quiet    atomic.Int64  // quietBeforeRepark, in nanoseconds (tests shorten it)
	reparked atomic.Uint64 // readers moved to fresh goroutines

	parker *parker // where quiet readers go, when there is one

	mu   sync.Mutex
	due  []*wire // ordered by nextKeepAlive
	head int

	// recheck holds readers that just started, to look again one quiet
	// spell later whether they went quiet (ordered by due time).
	recheck     []recheckEntry
	recheckHead int
}

type recheckEntry struct {
	w   *wire
	due int64
}

// recheckLater looks at w's reader again once it could have been quiet for
// quietBeforeRepark, so a connection woken by one frame is parked again
// soon, not only at its next keepalive.
func (k *keepAliveScheduler) recheckLater(w *wire) {
	k.mu.Lock()
	k.recheck = append(k.recheck, recheckEntry{w: w, due: time.Now().UnixNano() + k.quiet.Load()})
	k.mu.Unlock()
}

// quietBeforeRepark is how long a connection must have sent nothing before
// its reader is moved to a fresh goroutine with the smallest stack (see
// wire.repark); the scheduler looks once per keep-alive interval.
const quietBeforeRepark = time.Second

func newKeepAliveScheduler(interval time.Duration) *keepAliveScheduler {
	// Keepalives go out at most a tick late: a twentieth of the interval,
	// between 1 ms and 20 ms. Short ticks keep the work of each small (the
	// due connections, not all of them), so a tick is never a burst that
	// other connections' frames wait behind.
	k := &keepAliveScheduler{interval: interval, tick: min(max(interval/20, time.Millisecond), 20*time.Millisecond)}
	k.quiet.Store(int64(quietBeforeRepark))
	return k
}

// add schedules w's first keepalive one interval from now.
func (k *keepAliveScheduler) add(w *wire) {
	k.mu.Lock()
	w.nextKeepAlive = time.Now().Add(k.interval).UnixNano()
	k.due = append(k.due, w)
	k.mu.Unlock()
}

// run ticks until done is closed.
func (k *keepAliveScheduler) run(done <-chan struct{}) {
	t := time.NewTicker(k.tick)
	defer t.Stop()
	for {
		select {
		case <-done:
			return
		case now := <-t.C:
			k.fire(now.UnixNano())
			if k.parker != nil {
				k.parker.expire(now.UnixNano())
			}
		}
	}
}

// fire queues the keepalives due at now.
func (k *keepAliveScheduler) fire(now int64) {
	k.mu.Lock()
	defer k.mu.Unlock()
	n := len(k.due) // connections appended again below wait for a later tick
	for k.head < n {
		w := k.due[k.head]
		if w.nextKeepAlive > now {
			break
		}
		k.due[k.head] = nil
		k.head++
		if w.periodicKeepAlive() != nil {
			continue // closing: it leaves the schedule
		}
		if now-w.lastFrame.Load() > k.quiet.Load() && w.repark() {
			k.reparked.Add(1)
		}
		w.nextKeepAlive += int64(k.interval)
		if w.nextKeepAlive <= now { // a stalled tick: do not send a burst
			w.nextKeepAlive = now + int64(k.interval)
		}
		k.due = append(k.due, w)
	}
	if k.head > len(k.due)/2 && k.head > 64 {
		k.due = append(k.due[:0], k.due[k.head:]...)
		k.head = 0
	}
	quiet := k.quiet.Load()
	n = len(k.recheck) // entries appended again below wait for a later tick
	for k.recheckHead < n && k.recheck[k.recheckHead].due <= now {
		w := k.recheck[k.recheckHead].w
		k.recheck[k.recheckHead] = recheckEntry{}
		k.recheckHead++
		last := w.lastFrame.Load()
		switch {
		case now-last > quiet:
			if w.repark() {
				k.reparked.Add(1)
			}
		case w.reparkable.Load():
			// A frame came meanwhile: look again one quiet spell after it,
			// not only at the next keepalive (an interval later).
			k.recheck = append(k.recheck, recheckEntry{w: w, due: last + quiet + 1})
		}
	}
	if k.recheckHead > len(k.recheck)/2 && k.recheckHead > 64 {
		k.recheck = append(k.recheck[:0], k.recheck[k.recheckHead:]...)
		k.recheckHead = 0
	}
}
