package cluster

import (
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// entry is a presence update as a watch delivers it.
type entry struct {
	key string
	op  jetstream.KeyValueOp
}

func (e entry) Bucket() string                  { return presenceBucket }
func (e entry) Key() string                     { return e.key }
func (e entry) Value() []byte                   { return nil }
func (e entry) Revision() uint64                { return 1 }
func (e entry) Created() time.Time              { return time.Time{} }
func (e entry) Delta() uint64                   { return 0 }
func (e entry) Operation() jetstream.KeyValueOp { return e.op }

func TestRoster(t *testing.T) {
	put := func(k string) entry { return entry{k, jetstream.KeyValuePut} }
	del := func(k string) entry { return entry{k, jetstream.KeyValueDelete} }
	now := time.Now()
	r := newRoster(time.Minute)
	steps := []struct {
		name string
		e    entry
		when time.Time
		want map[string]bool
	}{
		{"a connection of a node not seen yet is not known", put(presenceKey("n2.c1", "")), now, map[string]bool{"n2.c1": false}},
		{"its node appears", put("node.n2"), now, map[string]bool{"n2.c1": true}},
		{"it authenticates: a second key, briefly", put(presenceKey("n2.c1", "agent-b")), now, map[string]bool{"n2.c1": true}},
		{"the old key goes, the connection stays", del(presenceKey("n2.c1", "")), now, map[string]bool{"n2.c1": true}},
		{"a repeated put counts once", put(presenceKey("n2.c1", "agent-b")), now, map[string]bool{"n2.c1": true}},
		{"another connection", put(presenceKey("n2.c2", "")), now, map[string]bool{"n2.c1": true, "n2.c2": true}},
		{"the connection closes", del(presenceKey("n2.c1", "agent-b")), now, map[string]bool{"n2.c1": false, "n2.c2": true}},
		{"a node last seen beyond the TTL is dead, with its connections", put("node.n2"), now.Add(-2 * time.Minute), map[string]bool{"n2.c2": false}},
		{"until it writes its presence again", put("node.n2"), now, map[string]bool{"n2.c2": true}},
		{"a purge removes the key", entry{presenceKey("n2.c2", ""), jetstream.KeyValuePurge}, now, map[string]bool{"n2.c2": false}},
	}
	for _, s := range steps {
		r.apply(s.e, s.when)
		for id, want := range s.want {
			if got := r.has(id); got != want {
				t.Fatalf("%s: has(%s) = %v, want %v", s.name, id, got, want)
			}
		}
	}
}
