// Package clock reads the wall clock for the price of one monotonic clock
// read.
//
// time.Now reads two clocks, the wall clock and the monotonic one, and on a
// virtual machine each read can cost tens of nanoseconds; the gateway reads
// the time for every frame (its arrival), every handler call (its deadline)
// and every reply (its timestamp). UnixNano adds the monotonic time elapsed
// since an anchor to the anchor's wall clock, and takes a new anchor from
// time.Now once the last one is a second old, so a wall clock that is set or
// slewed is followed within a second.
package clock

import (
	"sync/atomic"
	"time"
)

// reanchorAfter is how old an anchor may get before UnixNano takes a new one.
const reanchorAfter = time.Second

// anchor is a reading of both clocks at once.
type anchor struct {
	t    time.Time // with its monotonic reading
	wall int64     // t.UnixNano()
}

var current atomic.Pointer[anchor]

// UnixNano is time.Now().UnixNano() to within the drift of the monotonic
// clock from the wall clock over a second.
func UnixNano() int64 {
	if a := current.Load(); a != nil {
		if d := time.Since(a.t); d >= 0 && d < reanchorAfter {
			return a.wall + int64(d)
		}
	}
	t := time.Now()
	current.Store(&anchor{t: t, wall: t.UnixNano()})
	return t.UnixNano()
}

// UnixMilli is UnixNano in milliseconds.
func UnixMilli() int64 { return UnixNano() / int64(time.Millisecond) }
