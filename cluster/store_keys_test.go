package cluster

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"testing"
	"time"

	"github.com/secureagentmessaging/samgw/internal/testutil"
)

// TestStoreKeys lists keys by prefix on the shared store: sorted, bounded
// by limit, expired ones left out, any character in a key; NATS down is
// ErrUnavailable.
func TestStoreKeys(t *testing.T) {
	ns := natsServer(t, -1, t.TempDir())
	defer ns.Shutdown()
	c, err := Connect(context.Background(), Config{URLs: ns.ClientURL(), Node: "n1", Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	s := c.Store()
	ctx := t.Context()
	if keys, err := s.Keys(ctx, "", 10); err != nil || len(keys) != 0 {
		t.Fatalf("empty bucket: %v %v", keys, err)
	}
	for _, k := range []string{"task:3", "task:1", "task:2", "worker:1", "task:é.*>", "tas"} {
		if err := s.Set(ctx, k, []byte(`1`), 0); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Set(ctx, "task:0", []byte(`1`), time.Millisecond); err != nil { // expires at once
		t.Fatal(err)
	}
	testutil.Eventually(t, "task:0 to expire", func() bool { v, err := s.Get(ctx, "task:0"); return err == nil && v == nil })
	for _, tc := range []struct {
		prefix string
		limit  int
		want   []string
	}{
		{"task:", 10, []string{"task:1", "task:2", "task:3", "task:é.*>"}},
		{"task:", 2, []string{"task:1", "task:2"}},
		{"worker:", 10, []string{"worker:1"}},
		{"nothing", 10, nil},
		{"", 100, []string{"tas", "task:1", "task:2", "task:3", "task:é.*>", "worker:1"}},
	} {
		keys, err := s.Keys(ctx, tc.prefix, tc.limit)
		if err != nil || !slices.Equal(keys, tc.want) {
			t.Errorf("Keys(%q, %d) = %q, %v; want %q", tc.prefix, tc.limit, keys, err, tc.want)
		}
	}
	ns.Shutdown()
	ns.WaitForShutdown()
	testutil.Eventually(t, "the loss of NATS to be noticed", func() bool { return !c.nc.IsConnected() })
	if _, err := s.Keys(ctx, "task:", 10); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("NATS down: %v, want ErrUnavailable", err)
	}
}
