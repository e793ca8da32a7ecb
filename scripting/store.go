package scripting

import (
	"errors"
	"strconv"
	"sync"

	"github.com/secureagentmessaging/samgw/internal/luabox"
)

// ErrNotANumber is returned by Store.Incr when the key holds something else.
var ErrNotANumber = errors.New("scripting: store value is not a number")

// Store is the key-value store shared by every handler and connection: the
// `store` module of the script API. Values are kept as JSON, so they leave
// one Lua state and enter another as plain data, and survive reloads.
//
// A Store is safe for concurrent use.
type Store struct {
	mu     sync.RWMutex
	values map[string][]byte
}

// NewStore returns an empty Store.
func NewStore() *Store { return &Store{values: make(map[string][]byte)} }

// Get returns the JSON value of key, or nil.
func (s *Store) Get(key string) []byte {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.values[key]
}

// Set stores the JSON value of key; the slice is kept, so callers must not
// reuse it.
func (s *Store) Set(key string, value []byte) {
	s.mu.Lock()
	s.values[key] = value
	s.mu.Unlock()
}

// Delete removes key.
func (s *Store) Delete(key string) {
	s.mu.Lock()
	delete(s.values, key)
	s.mu.Unlock()
}

// Incr adds n to the number at key (a missing key counts as 0) and returns
// the new value, atomically.
func (s *Store) Incr(key string, n float64) (float64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var v float64
	if raw, ok := s.values[key]; ok {
		var err error
		if v, err = strconv.ParseFloat(string(raw), 64); err != nil {
			return 0, ErrNotANumber
		}
	}
	v += n
	out, err := luabox.AppendNumber(nil, v)
	if err != nil {
		return 0, err
	}
	s.values[key] = out
	return v, nil
}

// Len returns the number of keys.
func (s *Store) Len() int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return len(s.values)
}
