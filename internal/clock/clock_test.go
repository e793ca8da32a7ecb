package clock

import (
	"sync"
	"testing"
	"time"
)

// within checks that read gives a time between the wall clock read just
// before and just after it (t.Errorf: it runs on other goroutines too).
func within(t *testing.T, read func() int64) {
	t.Helper()
	before := time.Now().UnixNano()
	got := read()
	after := time.Now().UnixNano()
	// The monotonic clock may run a little apart from the wall clock
	// within an anchor's second (slewing): allow a millisecond.
	if got < before-int64(time.Millisecond) || got > after+int64(time.Millisecond) {
		t.Errorf("UnixNano() = %d, the wall clock said %d … %d", got, before, after)
	}
}

func TestUnixNanoFollowsTheWallClock(t *testing.T) {
	within(t, UnixNano)
	prev := UnixNano()
	for range 100000 {
		now := UnixNano()
		if now < prev {
			t.Fatalf("went back from %d to %d within one anchor", prev, now)
		}
		prev = now
	}
	within(t, UnixNano)
	if ms, ns := UnixMilli(), time.Now().UnixMilli(); ms > ns || ms < ns-2 {
		t.Fatalf("UnixMilli() = %d, the wall clock %d", ms, ns)
	}
}

// TestAStaleOrSteppedAnchorIsReplaced: an anchor a second old, whose wall
// reading is an hour off (as after the clock was set), gives way to a new
// one at the next read.
func TestAStaleOrSteppedAnchorIsReplaced(t *testing.T) {
	old := time.Now().Add(-reanchorAfter) // keeps its monotonic reading
	current.Store(&anchor{t: old, wall: old.UnixNano() - int64(time.Hour)})
	within(t, UnixNano)
	if a := current.Load(); time.Since(a.t) >= reanchorAfter {
		t.Fatal("the stale anchor was kept")
	}
}

func TestUnixNanoConcurrently(t *testing.T) {
	current.Store(nil)
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 10000 {
				within(t, UnixNano)
			}
		})
	}
	wg.Wait()
}

func BenchmarkUnixNano(b *testing.B) {
	for b.Loop() {
		UnixNano()
	}
}

func BenchmarkTimeNow(b *testing.B) {
	for b.Loop() {
		time.Now().UnixNano()
	}
}
