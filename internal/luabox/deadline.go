package luabox

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/secureagentmessaging/samgw/internal/clock"
)

// CallDeadline is the context of every call made on one Lua state. Arming
// it for a call is one atomic store of the deadline: no timer per call, no
// context.WithTimeout. A watchdog that owns many deadlines looks at them
// every few milliseconds and stops the overdue ones (see Overdue), so a
// call is stopped within its timeout plus the watchdog's period.
//
// Once it has been stopped, the state is thrown away with it: Done never
// reopens.
type CallDeadline struct {
	done  chan struct{}
	once  sync.Once
	at    atomic.Int64 // Unix nanoseconds of the running call's deadline; 0 between calls
	cause atomic.Pointer[error]
}

// NewCallDeadline returns a deadline for the calls of one state; set it as
// the state's context.
func NewCallDeadline() *CallDeadline {
	return &CallDeadline{done: make(chan struct{})}
}

// Stop ends the call in progress for cause (the first cause wins).
func (d *CallDeadline) Stop(cause error) {
	d.cause.CompareAndSwap(nil, &cause)
	d.once.Do(func() { close(d.done) })
}

// Arm starts a call that may last timeout.
func (d *CallDeadline) Arm(timeout time.Duration) {
	d.at.Store(clock.UnixNano() + int64(timeout))
}

// Disarm ends the call and reports whether it finished in time; when it did
// not, the deadline (and its state) must not be used again.
func (d *CallDeadline) Disarm() bool {
	d.at.Store(0)
	return !d.expired()
}

// Overdue reports whether a call is running past its deadline at now (Unix
// nanoseconds); the watchdog then stops it.
func (d *CallDeadline) Overdue(now int64) bool {
	at := d.at.Load()
	return at != 0 && now >= at
}

// StoppedBy is why the call was stopped, once it was.
func (d *CallDeadline) StoppedBy() error {
	if c := d.cause.Load(); c != nil {
		return *c
	}
	return nil
}

// Running reports whether a call is in progress (armed, not yet disarmed).
func (d *CallDeadline) Running() bool { return d.at.Load() != 0 }

func (d *CallDeadline) expired() bool {
	select {
	case <-d.done:
		return true
	default:
		return false
	}
}

// Deadline, Done, Err and Value make a CallDeadline a context.Context, for
// gopher-lua's instruction loop and for anything a script calls out to.
func (d *CallDeadline) Deadline() (time.Time, bool) {
	at := d.at.Load()
	return time.Unix(0, at), at != 0
}
func (d *CallDeadline) Done() <-chan struct{} { return d.done }
func (d *CallDeadline) Value(any) any         { return nil }
func (d *CallDeadline) Err() error {
	if d.expired() {
		return d.StoppedBy()
	}
	return nil
}
