package cluster

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/secureagentmessaging/samgw/internal/testutil"
)

// TestNodeDownHook: a node that dies (its presence stops, nothing is
// withdrawn) and a node that stops (its presence is withdrawn) are each
// reported once, on the live node with the smallest name, to
// on_node_down(node, conn_ids) with the connections presence listed for
// them; the node that dies is noticed within the presence TTL and a third
// of it.
func TestNodeDownHook(t *testing.T) {
	ns := natsServer(t, -1, t.TempDir())
	defer ns.Shutdown()
	scripts := t.TempDir()
	if err := os.WriteFile(filepath.Join(scripts, "default.lua"), []byte(handler+`
function on_node_down(node, ids)
  store.set("down:" .. node, ids)
  store.incr("calls:" .. node)
end`), 0o644); err != nil {
		t.Fatal(err)
	}
	a := startNode(t, "alpha", ns.ClientURL(), scripts)
	b := startNode(t, "beta", ns.ClientURL(), scripts)
	c := startNode(t, "gamma", ns.ClientURL(), scripts)
	var ids []string
	for _, tok := range []string{"a", "b"} {
		ids = append(ids, connectAgent(t, b, tok).id)
	}
	slices.Sort(ids)
	watcher := connectAgent(t, a, "c")
	testutil.Eventually(t, "the others to see beta's connections", func() bool {
		var got []string
		json.Unmarshal([]byte(call(t, watcher, `{"op":"connections","scope":"cluster"}`)), &got)
		return len(got) == 3
	})
	// Every node has seen the others live at a check (every third of the TTL).
	waitChecks(t, a, b, c)

	// beta dies: no shutdown, nothing withdrawn.
	died := time.Now()
	b.cluster.stopRefresh()
	b.cluster.nc.Close()
	testutil.Eventually(t, "on_node_down for beta", func() bool {
		return call(t, watcher, `{"op":"getv","key":"calls:beta"}`) == `{"v":1}`
	})
	if d := time.Since(died); d > 3*time.Second {
		t.Errorf("beta's death noticed after %v; presence TTL 1.5s", d)
	}
	var got struct{ V []string }
	json.Unmarshal([]byte(call(t, watcher, `{"op":"getv","key":"down:beta"}`)), &got)
	if !slices.Equal(got.V, ids) {
		t.Fatalf("on_node_down(beta) got %q, want %q", got.V, ids)
	}

	// gamma stops: its presence is withdrawn.
	c.engine.Close()
	c.cluster.Close()
	testutil.Eventually(t, "on_node_down for gamma", func() bool {
		return call(t, watcher, `{"op":"getv","key":"calls:gamma"}`) == `{"v":1}`
	})
	// Once each: more checks change nothing.
	waitChecks(t, a)
	for _, node := range []string{"beta", "gamma"} {
		if n := call(t, watcher, `{"op":"getv","key":"calls:`+node+`"}`); n != `{"v":1}` {
			t.Fatalf("on_node_down(%s) ran %s times, want once", node, n)
		}
	}
}

// waitChecks waits until each node has made two more presence checks.
func waitChecks(t *testing.T, nodes ...*node) {
	t.Helper()
	for _, n := range nodes {
		from := n.cluster.checks.Load()
		testutil.Eventually(t, "two presence checks on "+n.name, func() bool { return n.cluster.checks.Load() >= from+2 })
	}
}
