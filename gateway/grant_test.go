package gateway

import (
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/secureagentmessaging/samgw/access"
	"github.com/secureagentmessaging/samgw/protocol"
)

// chatRoles grants route chat when on, and nothing when off.
func chatRoles(on bool) map[string]access.Role {
	if on {
		return map[string]access.Role{"chatter": {Routes: []string{"chat"}}}
	}
	return map[string]access.Role{"chatter": {Routes: []string{"other"}}}
}

func withRoles(ids []Identity, roles ...string) []Identity {
	out := make([]Identity, len(ids))
	for i, id := range ids {
		id.Routes = nil
		id.Roles = roles
		out[i] = id
	}
	return out
}

// TestReloadKeepsReplayWindow: a reload that keeps an identity's key keeps
// the signed ids it has seen, so a reload never opens a replay.
func TestReloadKeepsReplayWindow(t *testing.T) {
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	srv, addr := startServer(t, Config{Auth: authConfig(pub), Logger: quietLogger()})
	p := signerPeer(t, addr)
	m := protocol.Message{Type: protocol.TypeData, ID: "once", Timestamp: protocol.Now(), Route: "chat", Payload: []byte(`1`)}
	p.send(signedFrame(t, priv, m))
	expectFrame(t, p.nextSkipping(), "data", "once", `1`)

	if _, err := srv.SetIdentities(withRoles(authConfig(pub).Identities, "chatter"), chatRoles(true)); err != nil {
		t.Fatal(err)
	}
	p.send(signedFrame(t, priv, m))
	expectError(t, p.nextSkipping(), protocol.CodeReplay, "once")
	q := signerPeer(t, addr)
	q.send(signedFrame(t, priv, m))
	expectError(t, q.nextSkipping(), protocol.CodeReplay, "once")
}

// TestReloadRevokes: an identity removed or given another token is closed
// at once, with the reason; one whose roles change follows them at its next
// message; a failed reload changes nothing.
func TestReloadRevokes(t *testing.T) {
	audit := &auditBuffer{}
	ids := withRoles(authConfig(nil).Identities, "chatter")
	srv, addr := startServer(t, Config{Auth: &AuthConfig{Identities: ids, Roles: chatRoles(true)}, Audit: audit, Logger: quietLogger()})
	a, b, s := dialPeer(t, addr), dialPeer(t, addr), signerPeer(t, addr)
	a.send(`{"type":"auth","payload":{"token":"token-a"},"id":"a"}` + "\n")
	expectFrame(t, a.nextSkipping(), "auth", "a", `{"ok":true,"identity":"agent-a"}`)
	b.send(`{"type":"auth","payload":{"token":"token-b"},"id":"a"}` + "\n")
	expectFrame(t, b.nextSkipping(), "auth", "a", `{"ok":true,"identity":"agent-b"}`)

	// A reload that fails (a role no one defined) keeps the previous one.
	bad := withRoles(ids, "nope")
	if _, err := srv.SetIdentities(bad, chatRoles(true)); !errors.Is(err, access.ErrUnknownRole) {
		t.Fatalf("SetIdentities with an unknown role: %v", err)
	}
	b.send(`{"type":"data","route":"chat","payload":1,"id":"d0"}` + "\n")
	expectFrame(t, b.nextSkipping(), "data", "d0", `1`)

	next := []Identity{
		{Name: "agent-a", TokenSHA256: tokenHash("token-a2"), Roles: []string{"chatter"}}, // a new token
		{Name: "agent-b", TokenSHA256: tokenHash("token-b"), Roles: []string{"chatter"}},  // same, roles change
	} // signer: removed
	closed, err := srv.SetIdentities(next, chatRoles(false))
	if err != nil || closed != 2 {
		t.Fatalf("SetIdentities: %d closed, %v; want 2", closed, err)
	}
	for _, p := range []*peer{a, s} {
		expectError(t, p.nextSkipping(), protocol.CodeUnauthorized, "")
		if f := p.nextSkipping(); f.Type != "close" {
			t.Fatalf("after the error: %+v", f)
		}
		p.expectEOF()
	}
	b.send(`{"type":"data","route":"chat","payload":1,"id":"d1"}` + "\n")
	expectError(t, b.nextSkipping(), protocol.CodeForbidden, "d1")
	b.send(`{"type":"data","route":"other","payload":2,"id":"d2"}` + "\n")
	expectFrame(t, b.nextSkipping(), "data", "d2", `2`)

	a2 := dialPeer(t, addr)
	a2.send(`{"type":"auth","payload":{"token":"token-a"},"id":"a"}` + "\n")
	expectError(t, a2.nextSkipping(), protocol.CodeUnauthorized, "a")
	a3 := dialPeer(t, addr)
	a3.send(`{"type":"auth","payload":{"token":"token-a2"},"id":"a"}` + "\n")
	expectFrame(t, a3.nextSkipping(), "auth", "a", `{"ok":true,"identity":"agent-a"}`)
	audit.mu.Lock()
	defer audit.mu.Unlock()
	for _, e := range audit.events {
		if e.Event == AuditForbidden && e.Identity == "agent-b" {
			if e.Kind != "route" || e.Target != "chat" || e.Route != "chat" || len(e.Roles) != 1 || e.Roles[0] != "chatter" {
				t.Fatalf("forbidden event %+v", e)
			}
			return
		}
	}
	t.Fatal("no forbidden event for agent-b")
}

// TestReloadUnderTraffic: reloads that flip a role while connections send
// race with nothing (under -race), and every frame is answered by the grant
// of one of the two files: echoed or forbidden, nothing else.
func TestReloadUnderTraffic(t *testing.T) {
	ids := withRoles(authConfig(nil).Identities[:2], "chatter")
	srv, addr := startServer(t, Config{Auth: &AuthConfig{Identities: ids, Roles: chatRoles(true)}, Logger: quietLogger()})
	const conns, frames = 8, 200
	var wg sync.WaitGroup
	counts := make([][2]int, conns)
	for i := range conns {
		p := dialPeer(t, addr)
		token := []string{"token-a", "token-b"}[i%2]
		p.send(`{"type":"auth","payload":{"token":"` + token + `"},"id":"a"}` + "\n")
		if f := p.nextSkipping(); f.Type != "auth" {
			t.Fatalf("auth: %+v", f)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range frames {
				id := fmt.Sprint("d", j)
				p.send(`{"type":"data","route":"chat","payload":1,"id":"` + id + `"}` + "\n")
				f, err := p.read(waitTimeout)
				switch {
				case err != nil:
					t.Errorf("conn %d frame %d: %v", i, j, err)
					return
				case f.Type == "data" && f.ID == id:
					counts[i][0]++
				case f.Type == "error" && f.ID == id && strings.Contains(string(f.Payload), `"code":"forbidden"`):
					counts[i][1]++
				default:
					t.Errorf("conn %d frame %d: %+v", i, j, f)
					return
				}
			}
		}()
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	reloads := 0
	for on := false; ; on = !on {
		select {
		case <-done:
			if reloads < 2 {
				t.Fatalf("only %d reloads ran during the traffic", reloads)
			}
			for i, c := range counts {
				if c[0]+c[1] != frames {
					t.Errorf("conn %d: %d answered of %d", i, c[0]+c[1], frames)
				}
			}
			t.Logf("%d reloads; answers (echoed, forbidden) per connection: %v", reloads, counts)
			return
		default:
		}
		if _, err := srv.SetIdentities(ids, chatRoles(on)); err != nil {
			t.Fatal(err)
		}
		reloads++
	}
}
