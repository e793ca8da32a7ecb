package cluster

import (
	"context"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// roster is this node's copy of the cluster's presence, kept current by a
// watch on the presence bucket: which connections exist, and when each
// node last refreshed its own entry. It lets a cross-node push go out as a
// plain publish (no round trip) when the target is known to exist.
//
// Entries of a crashed node are not deleted by the bucket's TTL in a way a
// watch sees, so a node counts as live only while its node.<name> entry has
// been rewritten within the presence TTL.
type roster struct {
	ttl time.Duration

	mu    sync.RWMutex
	keys  map[string]string    // presence key → connection id
	conns map[string]int       // connection id → presence keys naming it (two, briefly, while its identity changes)
	nodes map[string]time.Time // node → when its presence was last written, as seen here
	// For takeDown: nodes seen live by a check (and not since reported
	// down), and nodes whose presence was withdrawn (a stop) meanwhile.
	sawLive   map[string]bool
	withdrawn map[string]bool
}

func newRoster(ttl time.Duration) *roster {
	return &roster{ttl: ttl, keys: make(map[string]string), conns: make(map[string]int), nodes: make(map[string]time.Time),
		sawLive: make(map[string]bool), withdrawn: make(map[string]bool)}
}

// takeDown returns the nodes, other than self, that a check had seen live
// and that are down now (their presence not rewritten within the TTL, or
// withdrawn), each once, with the connections presence still lists for
// them; and whether self is the node that acts on it: the live node with
// the smallest name, so one node of a connected cluster does.
func (r *roster) takeDown(self string, now time.Time) (down map[string][]string, acts bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	acts = true
	for node, seen := range r.nodes {
		live := now.Sub(seen) < r.ttl && !r.withdrawn[node]
		switch {
		case live:
			r.sawLive[node] = true
			if node < self {
				acts = false
			}
		case r.sawLive[node] && node != self:
			if down == nil {
				down = make(map[string][]string)
			}
			down[node] = []string{}
			delete(r.sawLive, node)
		}
	}
	for node := range r.withdrawn {
		if _, known := r.nodes[node]; !known && r.sawLive[node] && node != self {
			if down == nil {
				down = make(map[string][]string)
			}
			down[node] = []string{}
			delete(r.sawLive, node)
		}
		delete(r.withdrawn, node)
	}
	for id := range r.conns {
		if ids, ok := down[nodeOf(id)]; ok {
			down[nodeOf(id)] = append(ids, id)
		}
	}
	for _, ids := range down {
		slices.Sort(ids)
	}
	return down, acts
}

// has reports whether connection id is in the presence of a live node.
func (r *roster) has(id string) bool {
	r.mu.RLock()
	defer r.mu.RUnlock()
	if r.conns[id] == 0 {
		return false
	}
	seen, ok := r.nodes[nodeOf(id)]
	return ok && time.Since(seen) < r.ttl
}

// apply records one update of the presence bucket, seen at when.
func (r *roster) apply(e jetstream.KeyValueEntry, when time.Time) {
	key := e.Key()
	r.mu.Lock()
	defer r.mu.Unlock()
	if node, ok := strings.CutPrefix(key, "node."); ok {
		if e.Operation() == jetstream.KeyValuePut {
			r.nodes[node] = when
			delete(r.withdrawn, node)
		} else {
			delete(r.nodes, node)
			r.withdrawn[node] = true
		}
		return
	}
	if !strings.HasPrefix(key, "conn.") {
		return
	}
	id, known := r.keys[key]
	switch {
	case e.Operation() == jetstream.KeyValuePut && !known:
		id = connOfKey(key)
		r.keys[key] = id
		r.conns[id]++
	case e.Operation() != jetstream.KeyValuePut && known:
		delete(r.keys, key)
		if r.conns[id]--; r.conns[id] <= 0 {
			delete(r.conns, id)
		}
	}
}

// watch keeps r current until ctx ends; it returns once the watch is
// closed.
func (r *roster) watch(ctx context.Context, kv jetstream.KeyValue, log interface{ Warn(string, ...any) }) {
	for ctx.Err() == nil {
		w, err := kv.WatchAll(ctx)
		if err != nil {
			log.Warn("Presence watch failed; retrying", "error", err)
			select {
			case <-ctx.Done():
				return
			case <-time.After(time.Second):
			}
			continue
		}
		live := false
		for e := range w.Updates() {
			switch {
			case e == nil: // the end of the initial values; what follows is live
				live = true
			case live:
				r.apply(e, time.Now()) // this node's clock, as has reads it
			default:
				r.apply(e, e.Created()) // the server's: how old the entry is
			}
		}
		w.Stop() //nolint:errcheck // closed already, or being stopped
	}
}

// liveNodes are the nodes whose presence was written within the TTL.
func (r *roster) liveNodes() map[string]bool {
	r.mu.RLock()
	defer r.mu.RUnlock()
	live := make(map[string]bool, len(r.nodes))
	for node, seen := range r.nodes {
		if time.Since(seen) < r.ttl {
			live[node] = true
		}
	}
	return live
}
