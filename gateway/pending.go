package gateway

import (
	"cmp"
	"slices"
	"sync/atomic"
)

// pendingBudget bounds the outbound bytes all of a server's connections
// hold together. Each connection's queue is bounded by MaxQueueBytes; the
// sum of many queues is bounded here: past max, the connections holding
// the most are closed as slow consumers until the sum is back under
// nine tenths of it. Choosing them takes a look at every connection, and
// meanwhile readers go on queueing (at memory speed), so while the sum is
// over max no queue may grow past guard either: the connection it belongs
// to is closed at once, before the look ends.
//
// Accounting costs nothing on the common path: a connection counts only
// what it holds beyond accountFloor (a batch of ordinary replies), so a
// healthy connection, whose queue empties with every write, never touches
// the shared counter; a backed-up one counts every byte past the floor.
// What goes uncounted is at most accountFloor per connection.
type pendingBudget struct {
	max      int64
	guard    int64         // while over max, a queue that grows past this is closed at once
	total    atomic.Int64  // bytes counted by all connections now
	peak     atomic.Int64  // the highest total seen (tests, and what an operator may ask)
	shedding atomic.Bool   // a shed runs; others do not start one
	closed   atomic.Uint64 // connections closed for the budget
	shed     func()        // closes the largest queues (Server.shedLargestQueues)
}

// accountFloor is what a connection holds before it counts against the
// budget.
const accountFloor = 16 << 10

// add moves the total by delta and reports whether it is over the budget.
func (b *pendingBudget) add(delta int64) bool {
	t := b.total.Add(delta)
	for p := b.peak.Load(); t > p && !b.peak.CompareAndSwap(p, t); p = b.peak.Load() {
	}
	return t > b.max
}

// overrun runs one shed unless one is running already.
func (b *pendingBudget) overrun() {
	if !b.shedding.CompareAndSwap(false, true) {
		return
	}
	defer b.shedding.Store(false)
	b.shed()
}

// newPendingBudget is a budget of max bytes; shed closes the largest
// queues when it is over.
func newPendingBudget(limit int64, shed func()) *pendingBudget {
	return &pendingBudget{max: limit, guard: max(limit/64, 2*accountFloor), shed: shed}
}

// reaccountLocked brings what w counts against its budget in line with
// what it holds now (queued, and handed to a write not yet done); an
// aborted connection holds nothing. It reports whether the budget is now
// over, after w grew. w.mu is held.
func (w *wire) reaccountLocked() (over bool) {
	b := w.cfg.budget
	if b == nil {
		return false
	}
	held := int64(len(w.pending) + w.inflight)
	if w.aborted {
		held = 0
	}
	counted := max(held-accountFloor, 0)
	if counted == w.accounted {
		return false
	}
	delta := counted - w.accounted
	w.accounted = counted
	return b.add(delta) && delta > 0
}

// overGuardLocked reports whether w holds more than a queue may while the
// budget is over. w.mu is held.
func (w *wire) overGuardLocked() bool {
	return int64(len(w.pending)+w.inflight) > w.cfg.budget.guard
}

// heldBytes is what w holds waiting to be written.
func (w *wire) heldBytes() int64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.aborted {
		return 0
	}
	return int64(len(w.pending) + w.inflight)
}

// causeOutboundFull closes the connections shed for the budget.
var causeOutboundFull = CloseCause{Kind: CloseSlowConsumer, Detail: "the server's outbound memory is full (MaxPendingBytes) and this connection held among the most"}

// shedLargestQueues closes the connections that hold the most outbound
// bytes, largest first, until the total is under nine tenths of the
// budget, so a crowd of readers that stopped reading cannot take the
// server's memory even when each stays under its own queue bound.
func (s *Server) shedLargestQueues() {
	b := s.wcfg.budget
	s.mu.Lock()
	conns := s.snapshot()
	s.mu.Unlock()
	type queue struct {
		c    *Conn
		held int64
	}
	queues := make([]queue, 0, len(conns))
	for _, c := range conns {
		if held := c.w.heldBytes(); held > accountFloor {
			queues = append(queues, queue{c, held})
		}
	}
	slices.SortFunc(queues, func(a, b queue) int { return cmp.Compare(b.held, a.held) })
	target := b.max / 10 * 9
	closed := 0
	for _, q := range queues {
		if b.total.Load() <= target {
			break
		}
		q.c.w.abort(causeOutboundFull)
		closed++
	}
	if closed > 0 {
		b.closed.Add(uint64(closed))
		s.log.Warn("Outbound memory full: closed the connections with the largest queues", "closed", closed,
			"max_pending_bytes", b.max, "pending_bytes", b.total.Load())
	}
}
