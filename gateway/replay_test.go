package gateway

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/secureagentmessaging/samgw/internal/testutil"
	"github.com/secureagentmessaging/samgw/protocol"
)

func TestReplayCache(t *testing.T) {
	t.Run("an id is refused within the window and forgotten after it", func(t *testing.T) {
		r := newReplayCache(80*time.Millisecond, 100)
		defer r.close()
		start := time.Unix(1000, 0)
		if r.remember("a", start) != replayFresh || r.remember("a", start.Add(70*time.Millisecond)) != replaySeen {
			t.Fatal("a repeat within the window passed")
		}
		if got := r.remember("a", start.Add(100*time.Millisecond)); got != replayFresh {
			t.Fatalf("after the window: %v", got)
		}
	})
	t.Run("beyond the cap new ids are refused, not stored", func(t *testing.T) {
		r := newReplayCache(time.Minute, 10)
		defer r.close()
		now := time.Now()
		for i := range 10 {
			if r.remember(fmt.Sprint(i), now) != replayFresh {
				t.Fatalf("id %d refused below the cap", i)
			}
		}
		if r.remember("one too many", now) != replayFull || r.held() != 10 {
			t.Fatalf("past the cap: %d held", r.held())
		}
	})
	t.Run("memory is returned when traffic stops", func(t *testing.T) {
		r := newReplayCache(40*time.Millisecond, 100_000)
		defer r.close()
		now := time.Now()
		for i := range 50_000 {
			r.remember(fmt.Sprint("id-", i), now)
		}
		testutil.Eventually(t, "the window emptied without further traffic", func() bool { return r.held() == 0 })
	})
	t.Run("forget undoes a remember", func(t *testing.T) {
		r := newReplayCache(time.Minute, 10)
		defer r.close()
		r.remember("x", time.Now())
		r.forget("x")
		if r.held() != 0 || r.remember("x", time.Now()) != replayFresh {
			t.Fatal("forget did not forget")
		}
	})
}

// signerPeer authenticates as the signing identity of authConfig.
func signerPeer(t *testing.T, addr string) *peer {
	t.Helper()
	p := dialPeer(t, addr)
	p.send(`{"type":"auth","payload":{"token":"token-s"},"id":"a"}` + "\n")
	expectFrame(t, p.nextSkipping(), "auth", "a", `{"ok":true,"identity":"signer"}`)
	return p
}

// TestSignedIDsAreBounded: 150 signed frames with 1 MB ids once kept 230 MB
// in the replay window (here 40, which kept 40 MB); now each is refused
// before anything is stored, and a flood of distinct small ids stops at the
// cap.
func TestSignedIDsAreBounded(t *testing.T) {
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	cfg := authConfig(pub)
	cfg.ReplayCap = 50
	srv, addr := startServer(t, Config{Auth: cfg, MaxFrameSize: 2 << 20})
	signer := srv.auth.byName("signer")
	p := signerPeer(t, addr)

	var before runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	now := protocol.Now()
	for i := range 40 {
		id := fmt.Sprintf("%d-%s", i, strings.Repeat("x", 1_000_000))
		p.send(signedFrame(t, priv, protocol.Message{Type: protocol.TypeData, ID: id, Timestamp: now, Payload: []byte(`1`)}))
		f := p.nextSkipping()
		expectError(t, f, protocol.CodeInvalidMessage, id)
	}
	var after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&after)
	if signer.seen.held() != 0 {
		t.Fatalf("%d oversized ids remembered", signer.seen.held())
	}
	if grown := int64(after.HeapAlloc) - int64(before.HeapAlloc); grown > 16<<20 {
		t.Fatalf("the heap grew by %d MiB", grown>>20)
	}

	// A flood of distinct, valid ids fills the window to its cap, then is
	// refused with replay; the ids already accepted stay refused as replays.
	for i := range 60 {
		id := fmt.Sprint("flood-", i)
		p.send(signedFrame(t, priv, protocol.Message{Type: protocol.TypeData, ID: id, Timestamp: now, Payload: []byte(`1`)}))
		f := p.nextSkipping()
		if i < 50 {
			expectFrame(t, f, "data", id, "1")
		} else {
			expectError(t, f, protocol.CodeReplay, id)
			if !strings.Contains(string(f.Payload), "too many signed messages") {
				t.Fatalf("refusal past the cap: %s", f.raw)
			}
		}
	}
	if held := signer.seen.held(); held != 50 {
		t.Fatalf("%d ids held, want the cap of 50", held)
	}
}

// TestSignedFramesWithControlCharactersAreRefused: (id "x", timestamp T,
// route "U\nr") and (id "x\nT", timestamp U, route "r") would sign the same
// bytes; both are refused as invalid before any signature check.
func TestSignedFramesWithControlCharactersAreRefused(t *testing.T) {
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	_, addr := startServer(t, Config{Auth: authConfig(pub)})
	p := signerPeer(t, addr)
	now := protocol.Now()
	a := protocol.Message{Type: protocol.TypeData, ID: "x", Timestamp: now, Route: fmt.Sprint(now+1, "\nr"), Payload: []byte(`1`)}
	b := protocol.Message{Type: protocol.TypeData, ID: fmt.Sprint("x\n", now), Timestamp: now + 1, Route: "r", Payload: []byte(`1`)}
	if string(protocol.AppendSigned(nil, &a)) != string(protocol.AppendSigned(nil, &b)) {
		t.Fatal("the two messages no longer sign the same bytes: the test lost its point")
	}
	p.send(signedFrame(t, priv, a))
	expectError(t, p.nextSkipping(), protocol.CodeInvalidMessage, "x")
	p.send(signedFrame(t, priv, b))
	expectError(t, p.nextSkipping(), protocol.CodeInvalidMessage, b.ID)
}

// claimRecorder is a ReplayGuard over a map, standing in for the cluster.
type claimRecorder struct {
	mu      sync.Mutex
	claimed map[string]bool
	fail    bool
}

func (c *claimRecorder) Claim(_ context.Context, identity, id string, _ time.Duration) (bool, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.fail {
		return false, errors.New("nats: no servers available")
	}
	if c.claimed[identity+"/"+id] {
		return false, nil
	}
	c.claimed[identity+"/"+id] = true
	return true, nil
}

// TestReplayGuardIsConsulted: with a ReplayGuard an id another node
// claimed is a replay, and a guard that cannot answer refuses the message
// (cluster_unavailable) without spending the id locally.
func TestReplayGuardIsConsulted(t *testing.T) {
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	guard := &claimRecorder{claimed: map[string]bool{"signer/elsewhere": true}}
	cfg := authConfig(pub)
	cfg.Replay = guard
	_, addr := startServer(t, Config{Auth: cfg})
	p := signerPeer(t, addr)
	now := protocol.Now()
	msg := func(id string) string {
		return signedFrame(t, priv, protocol.Message{Type: protocol.TypeData, ID: id, Timestamp: now, Payload: []byte(`1`)})
	}
	p.send(msg("elsewhere"))
	expectError(t, p.nextSkipping(), protocol.CodeReplay, "elsewhere")
	p.send(msg("here"))
	expectFrame(t, p.nextSkipping(), "data", "here", "1")

	guard.mu.Lock()
	guard.fail = true
	guard.mu.Unlock()
	p.send(msg("while down"))
	expectError(t, p.nextSkipping(), protocol.CodeClusterUnavailable, "while down")
	guard.mu.Lock()
	guard.fail = false
	guard.mu.Unlock()
	p.send(msg("while down"))
	expectFrame(t, p.nextSkipping(), "data", "while down", "1")
}
