package gateway

import (
	"context"
	"math"
	"sync"
	"time"
)

// MaxSignedIDLen is the longest id a signed message may carry: ids are what
// the replay window remembers, so their size is what it costs.
const MaxSignedIDLen = 128

// DefaultReplayCap bounds the ids remembered per identity when no rate
// limit sizes it: 100,000 ids of at most MaxSignedIDLen bytes, a few tens
// of MiB in the worst case.
const DefaultReplayCap = 100_000

// replayBuckets is how many slices of the window the ids are kept in; ids
// expire a slice at a time, so forgetting costs O(1) per id.
const replayBuckets = 8

// ReplayGuard checks signed message ids across the nodes of a cluster.
type ReplayGuard interface {
	// Claim records the id of identity's signed message for ttl and reports
	// whether it was new: false when any node claimed it within ttl. An
	// error means it could not be checked.
	Claim(ctx context.Context, identity, id string, ttl time.Duration) (bool, error)
}

// replayCheck is the outcome of remembering an id.
type replayCheck int

const (
	replayFresh replayCheck = iota
	replaySeen
	replayFull
)

// replayCache remembers the ids of one identity's signed messages for the
// replay window. The window is kept in replayBuckets+1 time buckets, each a
// map of the ids first seen in its slice of time: a lookup checks them all,
// an insert goes to the current one, and a whole bucket is dropped once it
// is older than the window. A sweep timer runs while the cache holds ids,
// so memory is returned when the identity goes quiet, not at its next
// message. At most cap ids are held; beyond that new ids are refused (the
// caller answers replay) rather than grown.
type replayCache struct {
	width time.Duration // one bucket's slice of the window
	cap   int

	mu      sync.Mutex
	count   int
	buckets [replayBuckets + 1]replayBucket
	sweeper *time.Timer // non-nil while ids are held
	closed  bool
}

type replayBucket struct {
	epoch int64 // which slice of time: unix nanoseconds / width
	ids   map[string]struct{}
}

func newReplayCache(window time.Duration, limit int) *replayCache {
	return &replayCache{width: max(window/replayBuckets, time.Millisecond), cap: limit}
}

func (r *replayCache) epoch(now time.Time) int64 { return now.UnixNano() / int64(r.width) }

// remember records id, first seen at now.
func (r *replayCache) remember(id string, now time.Time) replayCheck {
	e := r.epoch(now)
	r.mu.Lock()
	defer r.mu.Unlock()
	r.expire(e)
	for i := range r.buckets {
		if _, ok := r.buckets[i].ids[id]; ok {
			return replaySeen
		}
	}
	if r.count >= r.cap {
		return replayFull
	}
	b := &r.buckets[e%int64(len(r.buckets))]
	if b.ids == nil {
		b.epoch, b.ids = e, make(map[string]struct{})
	}
	b.ids[id] = struct{}{}
	r.count++
	if r.sweeper == nil && !r.closed {
		r.sweeper = time.AfterFunc(r.width, r.sweep)
	}
	return replayFresh
}

// forget removes an id remembered by mistake (its message was refused for
// another reason after all).
func (r *replayCache) forget(id string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for i := range r.buckets {
		if _, ok := r.buckets[i].ids[id]; ok {
			delete(r.buckets[i].ids, id)
			r.count--
		}
	}
}

// expire drops the buckets older than the window as of epoch e.
func (r *replayCache) expire(e int64) {
	for i := range r.buckets {
		b := &r.buckets[i]
		if b.ids != nil && b.epoch <= e-int64(len(r.buckets)) {
			r.count -= len(b.ids)
			b.ids = nil
		}
	}
}

// sweep expires old buckets and runs again while ids remain.
func (r *replayCache) sweep() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.expire(r.epoch(time.Now()))
	if r.count == 0 || r.closed {
		r.sweeper = nil
		return
	}
	r.sweeper.Reset(r.width)
}

// held is how many ids are remembered.
func (r *replayCache) held() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.count
}

// close stops the sweeper for good.
func (r *replayCache) close() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.closed = true
	if r.sweeper != nil {
		r.sweeper.Stop()
		r.sweeper = nil
	}
}

// replayCap is the default cap of a replay window: room for four
// connections sending at the full rate for the whole window, at least 1024;
// DefaultReplayCap without a rate limit.
func replayCap(rate float64, burst int, window time.Duration) int {
	if rate <= 0 {
		return DefaultReplayCap
	}
	return max(1024, int(math.Min(4*(rate*window.Seconds()+float64(burst)), math.MaxInt32)))
}
