package cluster

import (
	"context"
	"errors"
	"fmt"
	"strconv"

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
	return entry.Value(), nil
}

// Set stores the JSON value of key.
func (s *Store) Set(ctx context.Context, key string, value []byte) error {
	if !s.c.nc.IsConnected() { // fail at once rather than at the deadline
		return ErrUnavailable
	}
	if _, err := s.c.store.Put(ctx, storeKey(key), value); err != nil {
		return fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	return nil
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
		v, err := strconv.ParseFloat(string(entry.Value()), 64)
		if err != nil {
			return 0, scripting.ErrNotANumber
		}
		v += n
		if _, err := s.c.store.Update(ctx, k, []byte(formatNumber(v)), entry.Revision()); err == nil {
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
