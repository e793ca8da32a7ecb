package cluster

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/secureagentmessaging/samgw/scripting"
)

// maxIncrAttempts bounds the compare-and-set retries of one Incr.
const maxIncrAttempts = 100

// Store is the script store kept in the samgw_store bucket, shared by every
// node: values are JSON; Incr is atomic across nodes by compare-and-set.
// Reads see the latest write acknowledged by JetStream; there is no
// multi-key transaction.
type Store struct{ c *Cluster }

// Store returns the cluster-wide script store.
func (c *Cluster) Store() *Store { return &Store{c} }

// keys in the bucket are encoded: script keys may hold any character.
func storeKey(key string) string { return "k." + encodeKey(key) }

// Get returns the JSON value of key, or nil.
func (s *Store) Get(ctx context.Context, key string) ([]byte, error) {
	if !s.c.nc.IsConnected() { // fail at once rather than at the deadline
		return nil, ErrUnavailable
	}
	entry, err := s.c.store.Get(ctx, storeKey(key))
	switch {
	case errors.Is(err, jetstream.ErrKeyNotFound):
		return nil, nil
	case err != nil:
		return nil, fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	value, live := unwrapStored(entry.Value(), time.Now())
	if !live {
		return nil, nil
	}
	return value, nil
}

// Set stores the JSON value of key; a positive ttl makes it expire.
func (s *Store) Set(ctx context.Context, key string, value []byte, ttl time.Duration) error {
	if !s.c.nc.IsConnected() { // fail at once rather than at the deadline
		return ErrUnavailable
	}
	if _, err := s.c.store.Put(ctx, storeKey(key), wrapStored(value, ttl, time.Now())); err != nil {
		return fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	return nil
}

// CAS sets key to value (nil: deletes it) if it holds old now (nil: absent
// or expired), with the bucket's revisions making it one step across nodes.
func (s *Store) CAS(ctx context.Context, key string, old, value []byte, ttl time.Duration) (bool, error) {
	if !s.c.nc.IsConnected() { // fail at once rather than at the deadline
		return false, ErrUnavailable
	}
	k := storeKey(key)
	for range maxIncrAttempts {
		entry, err := s.c.store.Get(ctx, k)
		found := err == nil
		if err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
			return false, fmt.Errorf("%w: %v", ErrUnavailable, err)
		}
		var current []byte
		live := false
		if found {
			current, live = unwrapStored(entry.Value(), time.Now())
		}
		if live != (old != nil) || live && !bytes.Equal(current, old) {
			return false, nil
		}
		switch {
		case value == nil && !found:
			return true, nil
		case value == nil:
			err = s.c.store.Delete(ctx, k, jetstream.LastRevision(entry.Revision()))
		case !found:
			_, err = s.c.store.Create(ctx, k, wrapStored(value, ttl, time.Now()))
		default:
			_, err = s.c.store.Update(ctx, k, wrapStored(value, ttl, time.Now()), entry.Revision())
		}
		if err == nil {
			return true, nil
		}
		if ctx.Err() != nil {
			return false, fmt.Errorf("%w: %v", ErrUnavailable, ctx.Err())
		}
		// Another node wrote the key since we read it: read again.
	}
	return false, fmt.Errorf("cluster: cas %q: too much contention", key)
}

// A value with a time to live is kept as 0x00, its expiry in Unix
// milliseconds, 0x00, then the JSON (which never starts with a zero byte),
// so expiry works on any JetStream (no per-message TTL needed). An expired
// value is absent for every node; its bytes stay until the key is written
// or deleted.
func wrapStored(value []byte, ttl time.Duration, now time.Time) []byte {
	if ttl <= 0 {
		return value
	}
	out := append([]byte{0}, strconv.FormatInt(now.Add(ttl).UnixMilli(), 10)...)
	out = append(out, 0)
	return append(out, value...)
}

// unwrapStored returns the JSON of a stored value and whether it is live
// at now.
func unwrapStored(stored []byte, now time.Time) ([]byte, bool) {
	if len(stored) == 0 || stored[0] != 0 {
		return stored, true
	}
	i := bytes.IndexByte(stored[1:], 0)
	if i < 0 {
		return nil, false // not ours: treat as absent
	}
	expires, err := strconv.ParseInt(string(stored[1:1+i]), 10, 64)
	if err != nil {
		return nil, false
	}
	return stored[2+i:], now.UnixMilli() < expires
}

// Delete removes key.
func (s *Store) Delete(ctx context.Context, key string) error {
	if !s.c.nc.IsConnected() { // fail at once rather than at the deadline
		return ErrUnavailable
	}
	if err := s.c.store.Delete(ctx, storeKey(key)); err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
		return fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	return nil
}

// Incr adds n to the number at key (a missing key counts as 0) and returns
// the new value; concurrent increments from any node all count.
func (s *Store) Incr(ctx context.Context, key string, n float64) (float64, error) {
	if !s.c.nc.IsConnected() { // fail at once rather than at the deadline
		return 0, ErrUnavailable
	}
	k := storeKey(key)
	for range maxIncrAttempts {
		entry, err := s.c.store.Get(ctx, k)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			if _, err := s.c.store.Create(ctx, k, []byte(formatNumber(n))); err == nil {
				return n, nil
			} else if !errors.Is(err, jetstream.ErrKeyExists) {
				return 0, fmt.Errorf("%w: %v", ErrUnavailable, err)
			}
			continue // someone created it first
		}
		if err != nil {
			return 0, fmt.Errorf("%w: %v", ErrUnavailable, err)
		}
		current, live := unwrapStored(entry.Value(), time.Now())
		var v float64
		if live {
			if v, err = strconv.ParseFloat(string(current), 64); err != nil {
				return 0, scripting.ErrNotANumber
			}
		}
		v += n
		// The key keeps its expiry (an expired one starts again without).
		updated := []byte(formatNumber(v))
		if raw := entry.Value(); live && len(raw) > 0 && raw[0] == 0 {
			updated = append(raw[:len(raw)-len(current):len(raw)-len(current)], updated...)
		}
		if _, err := s.c.store.Update(ctx, k, updated, entry.Revision()); err == nil {
			return v, nil
		}
		if ctx.Err() != nil {
			return 0, fmt.Errorf("%w: %v", ErrUnavailable, ctx.Err())
		}
		// A concurrent update won: read again.
	}
	return 0, fmt.Errorf("cluster: incr %q: too much contention", key)
}

func formatNumber(f float64) string {
	if f == float64(int64(f)) && f < 1<<53 && f > -(1<<53) {
		return strconv.FormatInt(int64(f), 10)
	}
	return strconv.FormatFloat(f, 'g', -1, 64)
}

// Keys returns the live keys that start with prefix, sorted, at most
// limit of them. Keys are stored encoded (any character may be in one), so
// the bucket cannot filter by prefix: this lists every key of the bucket,
// then reads the matching ones in order until limit live ones are found
// (expired values are skipped). It is meant for buckets of thousands of
// keys.
func (s *Store) Keys(ctx context.Context, prefix string, limit int) ([]string, error) {
	if !s.c.nc.IsConnected() { // fail at once rather than at the deadline
		return nil, ErrUnavailable
	}
	lister, err := s.c.store.ListKeys(ctx)
	if err != nil {
		if errors.Is(err, jetstream.ErrNoKeysFound) {
			return nil, nil
		}
		return nil, fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	defer lister.Stop() //nolint:errcheck // stops the watch
	var matching []string
	for k := range lister.Keys() {
		enc, ok := strings.CutPrefix(k, "k.")
		if !ok {
			continue
		}
		raw, err := base64.RawURLEncoding.DecodeString(enc)
		if err == nil && strings.HasPrefix(string(raw), prefix) {
			matching = append(matching, string(raw))
		}
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	slices.Sort(matching)
	keys := make([]string, 0, min(len(matching), limit))
	for _, k := range matching {
		if len(keys) == limit {
			break
		}
		if v, err := s.Get(ctx, k); err != nil {
			return nil, err
		} else if v != nil {
			keys = append(keys, k)
		}
	}
	return keys, nil
}
