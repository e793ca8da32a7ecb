package gateway

import (
	"testing"
	"time"

	"github.com/secureagentmessaging/samgw/protocol"
)

// TestUnlistedCertificateIdentityIsRefused: with identities and a client
// CA, a certificate from that CA whose identity is not listed gets error
// unauthorized and close (audited), never a connection without the route
// ACL or the signature requirement a listed identity would have.
func TestUnlistedCertificateIdentityIsRefused(t *testing.T) {
	certs := newTLSFixture(t, "agent-a", "intruder")
	audit := &auditBuffer{}
	srv, addr := startServer(t, Config{TLSConfig: certs.serverConfig(t, true), HandshakeTimeout: time.Second,
		Auth: authConfig(nil), Audit: audit})

	p, err := tlsPeer(t, addr, certs.client(t, "intruder"))
	if err != nil {
		t.Fatal(err)
	}
	p.send(`{"type":"data","payload":"let me in","id":"d1"}` + "\n")
	expectError(t, p.nextSkipping(), protocol.CodeUnauthorized, "")
	f := p.nextSkipping()
	expectFrame(t, f, "close", "", `{"reason":"unauthorized"}`)
	p.expectEOF()
	if !audit.has(AuditAuthFailed, "intruder") {
		t.Fatal("no auth_failed audit event for the unlisted certificate")
	}
	if audit.has(AuditAuthOK, "intruder") {
		t.Fatal("the unlisted certificate was audited as auth_ok")
	}
	if n := srv.counters.authFailures.Load(); n != 1 {
		t.Fatalf("auth failures counted: %d, want 1", n)
	}

	// A listed certificate identity is still served, under its own rules.
	ok, err := tlsPeer(t, addr, certs.client(t, "agent-a"))
	if err != nil {
		t.Fatal(err)
	}
	ok.send(`{"type":"data","payload":"hello","id":"d2"}` + "\n")
	expectFrame(t, ok.nextSkipping(), "data", "d2", `"hello"`)
}
