package cluster

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// TestConnectionsListingUnderChurn: gateway.connections("cluster") on one
// node lists every open connection of another node whose client has its
// auth reply, however new, while connections come and go (from presence
// alone, refreshed 20 ms after a change, the newest was missing).
func TestConnectionsListingUnderChurn(t *testing.T) {
	ns := natsServer(t, -1, t.TempDir())
	t.Cleanup(ns.Shutdown) // last: after the nodes have left
	scripts := t.TempDir()
	if err := os.WriteFile(filepath.Join(scripts, "default.lua"), []byte(handler), 0o644); err != nil {
		t.Fatal(err)
	}
	n1, n2 := startNode(t, "n1", ns.ClientURL(), scripts), startNode(t, "n2", ns.ClientURL(), scripts)
	lister := connectAgent(t, n1, "a")
	var open []*agent
	for i := range 60 {
		fresh := connectAgent(t, n2, "b") // Connect returned: the auth reply has come
		open = append(open, fresh)
		if i%3 == 2 { // and one of the older ones goes
			gone := open[0]
			open = open[1:]
			gone.c.Disconnect("churn")
		}
		var ids []string
		json.Unmarshal([]byte(call(t, lister, `{"op":"connections","scope":"cluster"}`)), &ids) //nolint:errcheck // checked below
		for _, a := range append(open, lister) {
			if !slices.Contains(ids, a.id) {
				t.Fatalf("round %d: %s is open and not listed: %v", i, a.id, ids)
			}
		}
	}
}
