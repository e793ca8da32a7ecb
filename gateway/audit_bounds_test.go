package gateway

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/secureagentmessaging/samgw/internal/testutil"
	"github.com/secureagentmessaging/samgw/protocol"
)

// TestHugeRoutesNeverReachTheAudit: 20 frames with 1 MB routes once grew
// the audit log by 20.8 MB (one forbidden event each, route included). The
// route's syntax is checked before the ACL now, and every field an event
// writes is bounded.
func TestHugeRoutesNeverReachTheAudit(t *testing.T) {
	var out testutil.SyncBuffer
	log := NewAuditLog(&out, 0)
	_, addr := startServer(t, Config{Auth: authConfig(nil), Audit: log, MaxFrameSize: 2 << 20})
	p := dialPeer(t, addr)
	p.send(`{"type":"auth","payload":{"token":"token-b"},"id":"a"}` + "\n")
	expectFrame(t, p.nextSkipping(), "auth", "a", "")
	for i := range 20 {
		p.send(fmt.Sprintf(`{"type":"data","route":"%s","payload":1,"id":"r%d"}`+"\n", strings.Repeat("z", 1_000_000), i))
		expectError(t, p.nextSkipping(), protocol.CodeInvalidMessage, fmt.Sprint("r", i))
	}
	// A route of legal syntax the identity may not use is still audited.
	p.send(`{"type":"data","route":"admin","payload":1,"id":"f"}` + "\n")
	expectError(t, p.nextSkipping(), protocol.CodeForbidden, "f")
	p.send(`{"type":"close"}` + "\n")
	expectFrame(t, p.nextSkipping(), "close", "", "")
	p.expectEOF()
	testutil.Eventually(t, "the disconnect audited", func() bool { return strings.Contains(out.String(), `"event":"disconnect"`) })
	if err := log.Close(); err != nil {
		t.Fatal(err)
	}
	if n := len(out.String()); n > 4096 {
		t.Fatalf("the audit log grew by %d bytes:\n%.2000s", n, out.String())
	}
	if !strings.Contains(out.String(), `"event":"forbidden"`) || !strings.Contains(out.String(), `"route":"admin"`) {
		t.Fatalf("no forbidden event for admin:\n%s", out.String())
	}
}

func TestAuditFieldsAreTruncated(t *testing.T) {
	line := appendAuditEvent(nil, &AuditEvent{Time: time.Now(), Event: AuditScriptError, Route: strings.Repeat("r", 1000),
		Reason: strings.Repeat("é", 1000), Identity: strings.Repeat("i", 200)})
	var e map[string]any
	if err := json.Unmarshal(line, &e); err != nil {
		t.Fatalf("%s: %v", line, err)
	}
	for field, limit := range map[string]int{"route": maxAuditField, "identity": maxAuditField, "reason": maxAuditReason} {
		v, _ := e[field].(string)
		if len(v) > limit || !strings.HasSuffix(v, "…") {
			t.Errorf("%s: %d bytes (%.20q…), want at most %d ending in …", field, len(v), v, limit)
		}
	}
}

// TestRateLimitFloodIsAggregated: a flood of refused frames becomes one
// rate_limited event a second per connection, with a count, instead of one
// audit line per frame.
func TestRateLimitFloodIsAggregated(t *testing.T) {
	audit := &auditBuffer{}
	_, addr := startServer(t, Config{Rate: 1, RateBurst: 1, Audit: audit})
	p := dialPeer(t, addr)
	p.send(dataFrames(1000))
	refused := 0
	for range 1000 {
		if f := p.nextSkipping(); f.Type == "error" {
			refused++
		}
	}
	p.send(`{"type":"close"}` + "\n")
	expectFrame(t, p.nextSkipping(), "close", "", "")
	p.expectEOF()
	testutil.Eventually(t, "the disconnect audited", func() bool { return audit.has(AuditDisconnect, "") })
	audit.mu.Lock()
	defer audit.mu.Unlock()
	events, counted := 0, uint64(0)
	for _, e := range audit.events {
		if e.Event == AuditRateLimited {
			events++
			counted += e.Count
		}
	}
	if events == 0 || events > 3 || counted != uint64(refused) {
		t.Fatalf("%d rate_limited events counting %d frames; %d were refused", events, counted, refused)
	}
}

// TestAuthPayloadsAreNeverLogged: with debug logging, auth frames after the
// first and auth frames on certificate connections are logged without
// their payload.
func TestAuthPayloadsAreNeverLogged(t *testing.T) {
	var logs testutil.SyncBuffer
	logger := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	certs := newTLSFixture(t, "agent-a")
	_, addr := startServer(t, Config{Auth: authConfig(nil), Logger: logger})
	p := dialPeer(t, addr)
	p.send(`{"type":"auth","payload":{"token":"token-a"},"id":"a1"}` + "\n")
	expectFrame(t, p.nextSkipping(), "auth", "a1", "")
	p.send(`{"type":"auth","payload":{"token":"token-a"},"id":"a2"}` + "\n")
	expectFrame(t, p.nextSkipping(), "auth", "a2", "")
	p.send(`{"type":"auth","payload":{"token":"token-b"},"id":"a3"}` + "\n")
	expectError(t, p.nextSkipping(), protocol.CodeUnauthorized, "a3")

	_, tlsAddr := startServer(t, Config{Auth: authConfig(nil), Logger: logger, TLSConfig: certs.serverConfig(t, true)})
	q, err := tlsPeer(t, tlsAddr, certs.client(t, "agent-a"))
	if err != nil {
		t.Fatal(err)
	}
	q.send(`{"type":"auth","payload":{"token":"token-a"},"id":"c1"}` + "\n")
	expectFrame(t, q.nextSkipping(), "auth", "c1", "")
	if !strings.Contains(logs.String(), "Received auth") {
		t.Fatalf("the auth frames were not logged at all:\n%s", logs.String())
	}
	for _, token := range []string{"token-a", "token-b"} {
		if bytes.Contains([]byte(logs.String()), []byte(token)) {
			t.Fatalf("the log contains %q:\n%s", token, logs.String())
		}
	}
}
