package scripting

import (
	"context"
	"errors"
	"time"
)

// ErrClusterUnavailable is wrapped by the errors of Cluster and KV
// operations that could not reach the other nodes; the handler then fails
// with cluster_unavailable rather than hanging.
var ErrClusterUnavailable = errors.New("scripting: cluster unavailable")

// KV is the script store behind `store`: the in-process Store, or a shared
// one (cluster.Store) when nodes form a cluster. Values are JSON.
type KV interface {
	// Get returns the value of key, or nil when it has none (or it expired).
	Get(ctx context.Context, key string) ([]byte, error)
	// Set stores value; a positive ttl makes it expire that long from now.
	Set(ctx context.Context, key string, value []byte, ttl time.Duration) error
	Delete(ctx context.Context, key string) error
	// Incr adds n atomically and returns the new value; a non-number is
	// ErrNotANumber.
	Incr(ctx context.Context, key string, n float64) (float64, error)
	// CAS sets key to value (nil: deletes it) if its value is old now (nil:
	// absent or expired), atomically, and reports whether it did; values
	// compare as their JSON bytes. A positive ttl makes the new value expire.
	CAS(ctx context.Context, key string, old, value []byte, ttl time.Duration) (bool, error)
	// Keys returns the live keys that start with prefix, sorted, at most
	// limit of them.
	Keys(ctx context.Context, prefix string, limit int) ([]string, error)
}

// Cluster reaches the connections of other nodes (cluster.Cluster). Without
// one, the gateway module works on this node's connections only.
type Cluster interface {
	Send(ctx context.Context, connID string, payload []byte, route string) (bool, error)
	Broadcast(ctx context.Context, payload []byte, route, except string) (int, error)
	Connections(ctx context.Context) ([]string, error)
	SendTo(ctx context.Context, identity string, payload []byte, route string) (int, error)
	// PublishTopic pushes payload to the subscribers of topic on the other
	// nodes and returns how many they reached; DeliverTopics tells the
	// cluster how this node delivers what other nodes publish.
	PublishTopic(ctx context.Context, p TopicPush) (int, error)
	DeliverTopics(deliver func(TopicPush) int)
	Publish(subject string, payload []byte) error
	Request(ctx context.Context, subject string, payload []byte) ([]byte, error)
	// Announce is called when a connection comes (authenticated) or goes,
	// so the cluster can publish its presence promptly. It must not block.
	Announce()
}

// localKV adapts the in-process Store to KV.
type localKV struct{ s *Store }

func (l localKV) Get(_ context.Context, key string) ([]byte, error) { return l.s.Get(key), nil }
func (l localKV) Set(_ context.Context, key string, v []byte, ttl time.Duration) error {
	return l.s.Set(key, v, ttl)
}
func (l localKV) CAS(_ context.Context, key string, old, v []byte, ttl time.Duration) (bool, error) {
	return l.s.CAS(key, old, v, ttl)
}
func (l localKV) Delete(_ context.Context, key string) error { l.s.Delete(key); return nil }
func (l localKV) Keys(_ context.Context, prefix string, limit int) ([]string, error) {
	return l.s.Keys(prefix, limit), nil
}
func (l localKV) Incr(_ context.Context, key string, n float64) (float64, error) {
	return l.s.Incr(key, n)
}
