// Package gctune keeps the Go heap target from falling below a minimum.
//
// Go collects when the heap has grown by GOGC percent (100) over what the
// last collection left live. A gateway's live heap is small (a few MiB of
// connections and Lua states) while it allocates fast (every message
// becomes Lua tables and back), so with the default it collects dozens of
// times a second, and the collections, not the messages, take the CPU. The
// tuner raises GOGC after each collection so that the next one comes when
// the heap reaches at least the minimum; once the live heap is large
// (many connections), GOGC is the default again and memory per connection
// is what it was.
//
// The minimum is for two Ps on two cores, and the tuner scales it (see
// Floor): allocation grows with the Ps that run handlers, so a fixed floor
// would be reached, and a collection run, that much more often; and with
// more Ps than cores every mark phase and stop-the-world stretches while
// threads wait for a core.
package gctune

import (
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"sync"
)

// MaxPercent bounds the GOGC the tuner sets.
const MaxPercent = 10000

// DefaultMinHeap is the minimum heap target `samgw serve` keeps: measured
// on the benchmark report's Lua echo, 16 MiB gives what 32 and 64 MiB give
// (a third more messages per core than Go's default) while the memory per
// held connection stays what it was.
const DefaultMinHeap = 16 << 20

// tuner sets GOGC after every collection.
type tuner struct {
	minHeap uint64
	base    int

	mu      sync.Mutex
	stopped bool
	sample  []metrics.Sample
}

// sentinel is garbage made for each cycle: its finalizer runs after the
// collection that freed it, and makes the next one.
type sentinel struct {
	t *tuner
	_ [16]byte // not a tiny allocation, so it is freed on its own
}

// Start keeps the heap target at least Floor(minHeap, GOMAXPROCS, NumCPU)
// bytes (with GOGC at least
// base percent, 100 when GOGC is unset) until stop is called; stop restores
// base. It does nothing (and stop does nothing) for minHeap zero.
func Start(minHeap uint64) (stop func()) {
	if minHeap == 0 {
		return func() {}
	}
	base := debug.SetGCPercent(100)
	debug.SetGCPercent(base)
	t := &tuner{minHeap: minHeap, base: base, sample: []metrics.Sample{{Name: "/gc/heap/live:bytes"}}}
	t.tune()
	t.arm()
	return t.stop
}

func (t *tuner) arm() {
	runtime.SetFinalizer(&sentinel{t: t}, func(s *sentinel) {
		if s.t.tune() {
			s.t.arm()
		}
	})
}

// tune sets GOGC for the live heap now; it reports false once stopped.
func (t *tuner) tune() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.stopped {
		return false
	}
	metrics.Read(t.sample)
	floor := Floor(t.minHeap, runtime.GOMAXPROCS(0), runtime.NumCPU())
	debug.SetGCPercent(Percent(t.sample[0].Value.Uint64(), floor, t.base))
	return true
}

// MaxScale bounds how far Floor raises the minimum.
const MaxScale = 32

// Floor is the heap target the tuner keeps for a minimum of minHeap with
// procs Ps on cpus cores: minHeap for every two Ps, times the Ps that share
// a core, at most MaxScale × minHeap. With two Ps on two cores it is the
// minimum; with eight on eight, four times it; with eight on two, sixteen.
func Floor(minHeap uint64, procs, cpus int) uint64 {
	pairs := max(1, (procs+1)/2)
	perCore := max(1, (procs+cpus-1)/max(cpus, 1))
	return minHeap * uint64(min(pairs*perCore, MaxScale))
}

func (t *tuner) stop() {
	t.mu.Lock()
	defer t.mu.Unlock()
	if !t.stopped {
		t.stopped = true
		debug.SetGCPercent(t.base)
	}
}

// runtimeFloor is the heap size under which Go never collects at GOGC=100;
// it scales with GOGC (4 MiB × GOGC/100), so it bounds GOGC too.
const runtimeFloor = 4 << 20

// Percent is the GOGC that puts the next collection at minHeap for a live
// heap of live bytes: never below base, never above MaxPercent, and never
// so high that the runtime's own floor (4 MiB × GOGC/100) passes minHeap.
func Percent(live, minHeap uint64, base int) int {
	live = max(live, 1)
	if minHeap <= live {
		return base
	}
	p := min((minHeap-live)*100/live, minHeap*100/runtimeFloor)
	return int(min(max(p, uint64(base)), MaxPercent))
}
