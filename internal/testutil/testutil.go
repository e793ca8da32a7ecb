// Package testutil holds the helpers that tests of several packages share.
// It imports none of the project's packages, so any test can use it.
package testutil

import (
	"bytes"
	"sync"
	"testing"
	"time"
)

// WaitTimeout bounds every wait in tests: generous, so a loaded machine does
// not fail them, and never reached when things work.
const WaitTimeout = 10 * time.Second

// Eventually polls cond every 5 ms until it holds, failing the test after
// WaitTimeout. It waits on a ticker, never a sleep.
func Eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(WaitTimeout)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		<-tick.C
	}
}

// SyncBuffer is a bytes.Buffer that a program under test may write while
// the test reads it.
type SyncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *SyncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *SyncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
