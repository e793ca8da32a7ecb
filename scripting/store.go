package scripting

import (
	"bytes"
	"container/heap"
	"errors"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/secureagentmessaging/samgw/internal/luabox"
)

// ErrNotANumber is returned by Store.Incr when the key holds something else.
var ErrNotANumber = errors.New("scripting: store value is not a number")

// ErrStoreFull is returned by a write that would take the store past its
// byte budget; the store is left as it was.
var ErrStoreFull = errors.New("scripting: store full")

// DefaultStoreMaxBytes is the store's budget when none is configured.
const DefaultStoreMaxBytes = 256 << 20

// entryOverhead is what an entry costs beyond its key and value bytes (the
// map slot, the entry, the string and slice headers), so that a million
// empty keys count too.
const entryOverhead = 64

// Store is the key-value store shared by every handler and connection: the
// `store` module of the script API. Values are kept as JSON, so they leave
// one Lua state and enter another as plain data, and survive reloads. A
// value may expire: it is then absent for every call, and its memory is
// given back by the next write to the store.
//
// It holds at most maxBytes of keys, values and per-entry overhead: a
// script that stores something per message (a cache, a dedup set) would
// otherwise grow it until the memory guard stops every call, with nothing
// to give the memory back. A write past the budget fails with ErrStoreFull
// and what is stored stays.
//
// A Store is safe for concurrent use.
type Store struct {
	mu       sync.RWMutex
	values   map[string]storeEntry
	expiry   expiryHeap       // keys with a time to live, soonest first
	nowFunc  func() time.Time // the clock; tests set it
	used     int64            // bytes the entries in values count for
	maxBytes int64
}

type storeEntry struct {
	value   []byte
	expires int64 // Unix nanoseconds; 0: never
}

// NewStore returns an empty Store of at most maxBytes (zero:
// DefaultStoreMaxBytes).
func NewStore(maxBytes int64) *Store {
	if maxBytes <= 0 {
		maxBytes = DefaultStoreMaxBytes
	}
	return &Store{values: make(map[string]storeEntry), nowFunc: time.Now, maxBytes: maxBytes}
}

// entrySize is what key with value counts for in the budget.
func entrySize(key string, value []byte) int64 {
	return int64(len(key)+len(value)) + entryOverhead
}

// fits reports whether key can hold value within the budget; s.mu is held.
// Expired entries are swept first, so their bytes count as free.
func (s *Store) fits(key string, value []byte) bool {
	s.sweep()
	used := s.used + entrySize(key, value)
	if old, ok := s.values[key]; ok {
		used -= entrySize(key, old.value)
	}
	return used <= s.maxBytes
}

// remove deletes key and gives its bytes back; s.mu is held.
func (s *Store) remove(key string) {
	if e, ok := s.values[key]; ok {
		s.used -= entrySize(key, e.value)
		delete(s.values, key)
	}
}

func (s *Store) now() int64 { return s.nowFunc().UnixNano() }

// live returns key's entry unless it is absent or expired; s.mu is held.
func (s *Store) live(key string) (storeEntry, bool) {
	e, ok := s.values[key]
	if !ok || e.expires != 0 && e.expires <= s.now() {
		return storeEntry{}, false
	}
	return e, true
}

// Keys returns the live keys that start with prefix, sorted, at most limit
// of them. It looks at every key: a store is meant for thousands of keys,
// not millions.
func (s *Store) Keys(prefix string, limit int) []string {
	s.mu.RLock()
	var keys []string
	for k := range s.values {
		if strings.HasPrefix(k, prefix) {
			if _, ok := s.live(k); ok {
				keys = append(keys, k)
			}
		}
	}
	s.mu.RUnlock()
	slices.Sort(keys)
	return keys[:min(len(keys), limit)]
}

// Get returns the JSON value of key, or nil.
func (s *Store) Get(key string) []byte {
	s.mu.RLock()
	defer s.mu.RUnlock()
	e, _ := s.live(key)
	return e.value
}

// Set stores the JSON value of key; the slice is kept, so callers must not
// reuse it. A positive ttl makes it expire that long from now. Past the
// budget it fails with ErrStoreFull.
func (s *Store) Set(key string, value []byte, ttl time.Duration) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.fits(key, value) {
		return ErrStoreFull
	}
	s.put(key, value, ttl)
	return nil
}

// put stores an entry that fits; s.mu is held.
func (s *Store) put(key string, value []byte, ttl time.Duration) {
	e := storeEntry{value: value}
	if ttl > 0 {
		e.expires = s.now() + int64(ttl)
		heap.Push(&s.expiry, expiring{key: key, at: e.expires})
	}
	s.remove(key)
	s.values[key] = e
	s.used += entrySize(key, value)
	s.compactExpiry()
}

// compactExpiry drops the heap entries of keys rewritten or deleted since
// they were pushed, once they outnumber the live ones: a key rewritten
// with a long time to live, over and over, would otherwise leave one entry
// per write until each one's time came. s.mu is held.
func (s *Store) compactExpiry() {
	if len(s.expiry) <= 2*len(s.values)+64 {
		return
	}
	live := s.expiry[:0]
	for _, x := range s.expiry {
		if e, ok := s.values[x.key]; ok && e.expires == x.at {
			live = append(live, x)
		}
	}
	clear(s.expiry[len(live):])
	s.expiry = live
	heap.Init(&s.expiry)
}

// sweep deletes the entries whose time has come; s.mu is held. Heap entries
// of keys rewritten since are stale and dropped.
func (s *Store) sweep() {
	now := s.now()
	for s.expiry.Len() > 0 && s.expiry[0].at <= now {
		x := heap.Pop(&s.expiry).(expiring)
		if e, ok := s.values[x.key]; ok && e.expires == x.at {
			s.remove(x.key)
		}
	}
}

// Delete removes key.
func (s *Store) Delete(key string) {
	s.mu.Lock()
	s.remove(key)
	s.sweep()
	s.mu.Unlock()
}

// Incr adds n to the number at key (a missing key counts as 0) and returns
// the new value, atomically. The key keeps its expiry, if it has one.
func (s *Store) Incr(key string, n float64) (float64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var v float64
	e, ok := s.live(key)
	if ok {
		var err error
		if v, err = strconv.ParseFloat(string(e.value), 64); err != nil {
			return 0, ErrNotANumber
		}
	}
	v += n
	out, err := luabox.AppendNumber(nil, v)
	if err != nil {
		return 0, err
	}
	if !s.fits(key, out) {
		return 0, ErrStoreFull
	}
	s.remove(key)
	e.value = out
	s.values[key] = e
	s.used += entrySize(key, out)
	return v, nil
}

// CAS sets key to value (nil: deletes it) if its value is old now (nil:
// absent, or expired), as one step, and reports whether it did. Values
// compare as their JSON bytes. A positive ttl makes the new value expire.
// A new value past the budget fails with ErrStoreFull.
func (s *Store) CAS(key string, old, value []byte, ttl time.Duration) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.live(key)
	if ok != (old != nil) || ok && !bytes.Equal(e.value, old) {
		return false, nil
	}
	if value == nil {
		s.remove(key)
		s.sweep()
		return true, nil
	}
	if !s.fits(key, value) {
		return false, ErrStoreFull
	}
	s.put(key, value, ttl)
	return true, nil
}

// Bytes returns what the entries count for against the budget.
func (s *Store) Bytes() int64 {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.used
}

// Len returns the number of keys, expired ones not yet forgotten included.
func (s *Store) Len() int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return len(s.values)
}

// expiring is when a key with a time to live expires.
type expiring struct {
	key string
	at  int64
}

type expiryHeap []expiring

func (h expiryHeap) Len() int           { return len(h) }
func (h expiryHeap) Less(i, j int) bool { return h[i].at < h[j].at }
func (h expiryHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *expiryHeap) Push(x any)        { *h = append(*h, x.(expiring)) }
func (h *expiryHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}
