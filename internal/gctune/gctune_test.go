package gctune

import (
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"testing"

	"github.com/secureagentmessaging/samgw/internal/testutil"
)

func TestPercent(t *testing.T) {
	for _, tc := range []struct {
		live, min  uint64
		base, want int
	}{
		{8 << 20, 64 << 20, 100, 700},   // 8 MiB live: collect at 64 MiB
		{32 << 20, 64 << 20, 100, 100},  // 32 MiB: doubling reaches the minimum anyway
		{200 << 20, 64 << 20, 100, 100}, // large heaps: the default
		{8 << 20, 64 << 20, 900, 900},   // never below the operator's GOGC
		{1, 64 << 30, 100, MaxPercent},  // bounded
		{0, 64 << 20, 100, 1600},        // the runtime's floor, 4 MiB × 16, is the minimum then
		{2 << 20, 64 << 20, 100, 1600},  // likewise: not 3100, whose floor would be 124 MiB
	} {
		if got := Percent(tc.live, tc.min, tc.base); got != tc.want {
			t.Errorf("Percent(%d, %d, %d) = %d, want %d", tc.live, tc.min, tc.base, got, tc.want)
		}
	}
}

func TestFloor(t *testing.T) {
	const m = 16 << 20
	for _, tc := range []struct {
		procs, cpus int
		want        uint64
	}{
		{1, 1, m}, {1, 2, m}, {2, 2, m}, // the minimum is for two Ps on two cores
		{3, 4, 2 * m}, {4, 4, 2 * m}, {8, 8, 4 * m}, {64, 64, MaxScale * m}, // a pair of Ps allocates like two
		{4, 2, 4 * m}, {8, 2, 16 * m}, {8, 1, MaxScale * m}, // Ps that share a core stretch every mark phase
		{2, 0, m}, // a machine that reports no cores
	} {
		if got := Floor(m, tc.procs, tc.cpus); got != tc.want {
			t.Errorf("Floor(16 MiB, %d Ps, %d cores) = %d MiB, want %d MiB", tc.procs, tc.cpus, got>>20, tc.want>>20)
		}
	}
}

func gogc() uint64 {
	s := []metrics.Sample{{Name: "/gc/gogc:percent"}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}

func TestStartRaisesGOGCAfterEachCollectionAndStopRestoresIt(t *testing.T) {
	before := gogc()
	stop := Start(1 << 30)
	raised := gogc()
	if raised <= before {
		t.Fatalf("GOGC %d after Start, want above %d", raised, before)
	}
	// A collection re-tunes (the finalizer of the cycle's sentinel runs):
	// put GOGC back by hand and it comes up again.
	debug.SetGCPercent(int(before))
	testutil.Eventually(t, "the tuner to run after a collection", func() bool {
		runtime.GC()
		return gogc() > before
	})
	stop()
	if got := gogc(); got != before {
		t.Fatalf("GOGC %d after stop, want %d back", got, before)
	}
	runtime.GC() // the last sentinel's finalizer finds it stopped: GOGC stays
	runtime.GC()
	if got := gogc(); got != before {
		t.Fatalf("GOGC %d after a collection past stop, want %d", got, before)
	}
	if stop := Start(0); gogc() != before {
		t.Fatal("Start(0) changed GOGC")
	} else {
		stop()
	}
}
