package scripting

import (
	"bytes"
	"container/heap"
	"errors"
	"strconv"
	"sync"
	"time"

	"github.com/secureagentmessaging/samgw/internal/luabox"
)

// ErrNotANumber is returned by Store.Incr when the key holds something else.
var ErrNotANumber = errors.New("scripting: store value is not a number")

// Store is the key-value store shared by every handler and connection: the
// `store` module of the script API. Values are kept as JSON, so they leave
// one Lua state and enter another as plain data, and survive reloads. A
// value may expire: it is then absent for every call, and its memory is
// given back by the next write to the store.
//
// A Store is safe for concurrent use.
type Store struct {
	mu      sync.RWMutex
	values  map[string]storeEntry
	expiry  expiryHeap       // keys with a time to live, soonest first
	nowFunc func() time.Time // the clock; tests set it
}

type storeEntry struct {
	value   []byte
	expires int64 // Unix nanoseconds; 0: never
}

// NewStore returns an empty Store.
func NewStore() *Store { return &Store{values: make(map[string]storeEntry), nowFunc: time.Now} }

func (s *Store) now() int64 { return s.nowFunc().UnixNano() }

// live returns key's entry unless it is absent or expired; s.mu is held.
func (s *Store) live(key string) (storeEntry, bool) {
	e, ok := s.values[key]
	if !ok || e.expires != 0 && e.expires <= s.now() {
		return storeEntry{}, false
	}
	return e, true
}

// Get returns the JSON value of key, or nil.
func (s *Store) Get(key string) []byte {
	s.mu.RLock()
	defer s.mu.RUnlock()
	e, _ := s.live(key)
	return e.value
}

// Set stores the JSON value of key; the slice is kept, so callers must not
// reuse it. A positive ttl makes it expire that long from now.
func (s *Store) Set(key string, value []byte, ttl time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.put(key, value, ttl)
}

// put stores an entry and forgets what has expired; s.mu is held.
func (s *Store) put(key string, value []byte, ttl time.Duration) {
	e := storeEntry{value: value}
	if ttl > 0 {
		e.expires = s.now() + int64(ttl)
		heap.Push(&s.expiry, expiring{key: key, at: e.expires})
	}
	s.values[key] = e
	s.sweep()
}

// sweep deletes the entries whose time has come; s.mu is held. Heap entries
// of keys rewritten since are stale and dropped.
func (s *Store) sweep() {
	now := s.now()
	for s.expiry.Len() > 0 && s.expiry[0].at <= now {
		x := heap.Pop(&s.expiry).(expiring)
		if e, ok := s.values[x.key]; ok && e.expires == x.at {
			delete(s.values, x.key)
		}
	}
}

// Delete removes key.
func (s *Store) Delete(key string) {
	s.mu.Lock()
	delete(s.values, key)
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
	e.value = out
	s.values[key] = e
	s.sweep()
	return v, nil
}

// CAS sets key to value (nil: deletes it) if its value is old now (nil:
// absent, or expired), as one step, and reports whether it did. Values
// compare as their JSON bytes. A positive ttl makes the new value expire.
func (s *Store) CAS(key string, old, value []byte, ttl time.Duration) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.live(key)
	if ok != (old != nil) || ok && !bytes.Equal(e.value, old) {
		return false
	}
	if value == nil {
		delete(s.values, key)
		s.sweep()
		return true
	}
	s.put(key, value, ttl)
	return true
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
