package scripting

import (
	"context"
	"sync"
	"sync/atomic"
	"time"
)

// callDeadline is the context of every call made on one Lua state. It is
// reused from call to call: arming it costs a timer reset instead of the
// allocations (and parent bookkeeping) of a context.WithTimeout per message.
//
// Once it has fired, the state is thrown away with it: Done never reopens.
type callDeadline struct {
	timer   *time.Timer
	done    chan struct{}
	once    sync.Once
	at      time.Time   // the deadline of the call in progress; owner goroutine only
	running atomic.Bool // a call is in progress
	cause   atomic.Pointer[error]
}

func newCallDeadline() *callDeadline {
	d := &callDeadline{done: make(chan struct{})}
	d.timer = time.AfterFunc(time.Hour, d.expire)
	d.timer.Stop()
	return d
}

func (d *callDeadline) expire() { d.stop(context.DeadlineExceeded) }

// stop ends the call in progress for cause (the first cause wins).
func (d *callDeadline) stop(cause error) {
	d.cause.CompareAndSwap(nil, &cause)
	d.once.Do(func() { close(d.done) })
}

// arm starts a call that may last timeout.
func (d *callDeadline) arm(timeout time.Duration) {
	d.at = time.Now().Add(timeout)
	d.running.Store(true)
	d.timer.Reset(timeout)
}

// disarm ends the call and reports whether it finished in time; when it did
// not, the deadline (and its state) must not be used again.
func (d *callDeadline) disarm() bool {
	d.running.Store(false)
	return d.timer.Stop() && !d.expired()
}

// stoppedBy is why the call was stopped, once it was.
func (d *callDeadline) stoppedBy() error {
	if c := d.cause.Load(); c != nil {
		return *c
	}
	return nil
}

func (d *callDeadline) expired() bool {
	select {
	case <-d.done:
		return true
	default:
		return false
	}
}

// release stops the timer for good.
func (d *callDeadline) release() {
	d.timer.Stop()
}

// Deadline, Done, Err and Value make a callDeadline a context.Context, for
// gopher-lua's instruction loop and for anything a script calls out to.
func (d *callDeadline) Deadline() (time.Time, bool) { return d.at, true }
func (d *callDeadline) Done() <-chan struct{}       { return d.done }
func (d *callDeadline) Value(any) any               { return nil }
func (d *callDeadline) Err() error {
	if d.expired() {
		return d.stoppedBy()
	}
	return nil
}
