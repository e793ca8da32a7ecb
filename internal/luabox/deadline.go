package luabox

import (
	"context"
	"sync"
	"sync/atomic"
	"time"
)

// CallDeadline is the context of every call made on one Lua state. It is
// reused from call to call: arming it costs a timer reset instead of the
// allocations (and parent bookkeeping) of a context.WithTimeout per message.
//
// Once it has fired, the state is thrown away with it: Done never reopens.
type CallDeadline struct {
	timer   *time.Timer
	done    chan struct{}
	once    sync.Once
	at      time.Time   // the deadline of the call in progress; owner goroutine only
	running atomic.Bool // a call is in progress
	cause   atomic.Pointer[error]
}

// NewCallDeadline returns a deadline for the calls of one state; set it as
// the state's context.
func NewCallDeadline() *CallDeadline {
	d := &CallDeadline{done: make(chan struct{})}
	d.timer = time.AfterFunc(time.Hour, d.expire)
	d.timer.Stop()
	return d
}

func (d *CallDeadline) expire() { d.Stop(context.DeadlineExceeded) }

// Stop ends the call in progress for cause (the first cause wins).
func (d *CallDeadline) Stop(cause error) {
	d.cause.CompareAndSwap(nil, &cause)
	d.once.Do(func() { close(d.done) })
}

// Arm starts a call that may last timeout.
func (d *CallDeadline) Arm(timeout time.Duration) {
	d.at = time.Now().Add(timeout)
	d.running.Store(true)
	d.timer.Reset(timeout)
}

// Disarm ends the call and reports whether it finished in time; when it did
// not, the deadline (and its state) must not be used again.
func (d *CallDeadline) Disarm() bool {
	d.running.Store(false)
	return d.timer.Stop() && !d.expired()
}

// StoppedBy is why the call was stopped, once it was.
func (d *CallDeadline) StoppedBy() error {
	if c := d.cause.Load(); c != nil {
		return *c
	}
	return nil
}

// Running reports whether a call is in progress (armed, not yet disarmed).
func (d *CallDeadline) Running() bool { return d.running.Load() }

func (d *CallDeadline) expired() bool {
	select {
	case <-d.done:
		return true
	default:
		return false
	}
}

// Release stops the timer for good.
func (d *CallDeadline) Release() {
	d.timer.Stop()
}

// Deadline, Done, Err and Value make a CallDeadline a context.Context, for
// gopher-lua's instruction loop and for anything a script calls out to.
func (d *CallDeadline) Deadline() (time.Time, bool) { return d.at, true }
func (d *CallDeadline) Done() <-chan struct{}       { return d.done }
func (d *CallDeadline) Value(any) any               { return nil }
func (d *CallDeadline) Err() error {
	if d.expired() {
		return d.StoppedBy()
	}
	return nil
}
