package gateway

import (
	"bufio"
	"bytes"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/secureagentmessaging/samgw/internal/devcert"
	"github.com/secureagentmessaging/samgw/internal/testutil"
	"github.com/secureagentmessaging/samgw/protocol"
)

func tokenHash(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:])
}

// auditBuffer is an Auditor that keeps events for assertions.
type auditBuffer struct {
	mu     sync.Mutex
	events []AuditEvent
}

func (a *auditBuffer) Audit(e AuditEvent) {
	a.mu.Lock()
	a.events = append(a.events, e)
	a.mu.Unlock()
}

func (a *auditBuffer) has(event, identity string) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, e := range a.events {
		if e.Event == event && (identity == "" || e.Identity == identity) {
			return true
		}
	}
	return false
}

func authConfig(pub ed25519.PublicKey) *AuthConfig {
	return &AuthConfig{Identities: []Identity{
		{Name: "agent-a", TokenSHA256: tokenHash("token-a")},
		{Name: "agent-b", TokenSHA256: tokenHash("token-b"), Routes: []string{"chat", "chat.*"}},
		{Name: "signer", TokenSHA256: tokenHash("token-s"), PublicKey: base64.StdEncoding.EncodeToString(pub)},
	}}
}

func TestTokenAuthentication(t *testing.T) {
	audit := &auditBuffer{}
	srv, addr := startServer(t, Config{Auth: authConfig(nil), AuthTimeout: 300 * time.Millisecond, Audit: audit})

	good := dialPeer(t, addr)
	good.send(`{"type":"auth","payload":{"token":"token-a"},"id":"a1"}` + "\n")
	expectFrame(t, good.nextSkipping(), "auth", "a1", `{"ok":true,"identity":"agent-a"}`)
	good.send(`{"type":"data","payload":1,"id":"d1"}` + "\n")
	expectFrame(t, good.nextSkipping(), "data", "d1", `1`)
	testutil.Eventually(t, "the identity on the connection", func() bool {
		for _, in := range srv.Connections() {
			if c := srv.Conn(in.ID); c != nil && c.Identity() == "agent-a" {
				return true
			}
		}
		return false
	})

	tests := []struct {
		name, first, want string
	}{
		{"wrong token", `{"type":"auth","payload":{"token":"nope"},"id":"x"}`, "invalid token"},
		{"empty token", `{"type":"auth","payload":{},"id":"x"}`, "invalid token"},
		{"data first", `{"type":"data","payload":1,"id":"x"}`, "the first frame must be auth"},
		{"garbage first", `not json`, "the first frame must be auth"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := dialPeer(t, addr)
			p.send(tt.first + "\n")
			f := p.nextSkipping()
			expectError(t, f, protocol.CodeUnauthorized, f.ID)
			if !strings.Contains(string(f.Payload), tt.want) {
				t.Fatalf("error %s, want %q", f.Payload, tt.want)
			}
			expectFrame(t, p.nextSkipping(), "close", "", `{"reason":"unauthorized"}`)
			p.expectEOF()
		})
	}

	start := time.Now()
	silent := dialPeer(t, addr)
	f := silent.nextSkipping()
	expectError(t, f, protocol.CodeUnauthorized, "")
	if !strings.Contains(string(f.Payload), "timed out") || time.Since(start) < 300*time.Millisecond {
		t.Fatalf("auth timeout: %s after %v", f.Payload, time.Since(start))
	}
	expectFrame(t, silent.nextSkipping(), "close", "", `{"reason":"unauthorized"}`)
	silent.expectEOF()
	if !audit.has(AuditAuthOK, "agent-a") || !audit.has(AuditAuthFailed, "") {
		t.Fatalf("audit events %+v", audit.events)
	}
}

func TestRouteAccessControl(t *testing.T) {
	audit := &auditBuffer{}
	_, addr := startServer(t, Config{Auth: authConfig(nil), Audit: audit})
	p := dialPeer(t, addr)
	p.send(`{"type":"auth","payload":{"token":"token-b"},"id":"a"}` + "\n")
	expectFrame(t, p.nextSkipping(), "auth", "a", "")
	for _, tt := range []struct {
		route string
		ok    bool
	}{{"chat", true}, {"chat.room1", true}, {"admin", false}, {"", false}, {"chatter", false}} {
		p.send(fmt.Sprintf(`{"type":"data","route":%q,"payload":1,"id":"m"}`, tt.route) + "\n")
		f := p.nextSkipping()
		if tt.ok {
			expectFrame(t, f, "data", "m", "1")
		} else {
			expectError(t, f, protocol.CodeForbidden, "m")
		}
	}
	p.send(`{"type":"ping","id":"still"}` + "\n")
	expectFrame(t, p.nextSkipping(), "pong", "still", "")
	if !audit.has(AuditForbidden, "agent-b") {
		t.Fatal("no forbidden audit event")
	}
}

func signedFrame(t *testing.T, key ed25519.PrivateKey, m protocol.Message) string {
	t.Helper()
	m.Sig = base64.StdEncoding.EncodeToString(ed25519.Sign(key, protocol.AppendSigned(nil, &m)))
	return string(protocol.AppendFrame(nil, &m))
}

func TestMessageSignatures(t *testing.T) {
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	_, otherKey, _ := ed25519.GenerateKey(rand.Reader)
	audit := &auditBuffer{}
	_, addr := startServer(t, Config{Auth: &AuthConfig{Identities: authConfig(pub).Identities, MaxSkew: time.Minute}, Audit: audit})
	p := dialPeer(t, addr)
	p.send(`{"type":"auth","payload":{"token":"token-s"},"id":"a"}` + "\n")
	expectFrame(t, p.nextSkipping(), "auth", "a", `{"ok":true,"identity":"signer"}`)

	now := protocol.Now()
	good := protocol.Message{Type: protocol.TypeData, ID: "s1", Timestamp: now, Route: "r", Payload: []byte(`{"x": [1, 2]}`)}
	p.send(signedFrame(t, priv, good))
	expectFrame(t, p.nextSkipping(), "data", "s1", `{"x": [1, 2]}`)

	tampered := signedFrame(t, priv, protocol.Message{Type: protocol.TypeData, ID: "s2", Timestamp: now, Payload: []byte(`{"amount":1}`)})
	p.send(strings.Replace(tampered, `"amount":1`, `"amount":9`, 1))
	expectError(t, p.nextSkipping(), protocol.CodeBadSignature, "s2")

	// Re-encoding the payload (here: adding a space) breaks the signature:
	// it covers the bytes as sent.
	spaced := signedFrame(t, priv, protocol.Message{Type: protocol.TypeData, ID: "s3", Timestamp: now, Payload: []byte(`[1,2]`)})
	p.send(strings.Replace(spaced, `[1,2]`, `[1, 2]`, 1))
	expectError(t, p.nextSkipping(), protocol.CodeBadSignature, "s3")

	p.send(`{"type":"data","payload":1,"id":"s4","timestamp":` + fmt.Sprint(now) + `}` + "\n")
	expectError(t, p.nextSkipping(), protocol.CodeBadSignature, "s4")

	p.send(signedFrame(t, otherKey, protocol.Message{Type: protocol.TypeData, ID: "s5", Timestamp: now, Payload: []byte(`1`)}))
	expectError(t, p.nextSkipping(), protocol.CodeBadSignature, "s5")

	p.send(`{"type":"data","payload":1,"id":"s6","sig":"not base64!"}` + "\n")
	expectError(t, p.nextSkipping(), protocol.CodeBadSignature, "s6")
	// 88 characters without padding decode to 66 bytes: found by fuzzing,
	// it once crashed the server.
	p.send(`{"type":"data","payload":1,"id":"s7","sig":"` + strings.Repeat("A", 88) + `"}` + "\n")
	expectError(t, p.nextSkipping(), protocol.CodeBadSignature, "s7")

	// The same signed frame again is a replay, even on another connection.
	p.send(signedFrame(t, priv, good))
	expectError(t, p.nextSkipping(), protocol.CodeReplay, "s1")
	q := dialPeer(t, addr)
	q.send(`{"type":"auth","payload":{"token":"token-s"},"id":"a"}` + "\n")
	expectFrame(t, q.nextSkipping(), "auth", "a", "")
	q.send(signedFrame(t, priv, good))
	expectError(t, q.nextSkipping(), protocol.CodeReplay, "s1")

	stale := protocol.Message{Type: protocol.TypeData, ID: "old", Timestamp: now - 2*time.Minute.Milliseconds(), Payload: []byte(`1`)}
	p.send(signedFrame(t, priv, stale))
	expectError(t, p.nextSkipping(), protocol.CodeReplay, "old")
	future := protocol.Message{Type: protocol.TypeData, ID: "future", Timestamp: now + 2*time.Minute.Milliseconds(), Payload: []byte(`1`)}
	p.send(signedFrame(t, priv, future))
	expectError(t, p.nextSkipping(), protocol.CodeReplay, "future")

	if !audit.has(AuditBadSignature, "signer") || !audit.has(AuditReplay, "signer") {
		t.Fatalf("audit events %+v", audit.events)
	}
}

func TestRateLimit(t *testing.T) {
	audit := &auditBuffer{}
	_, addr := startServer(t, Config{Rate: 1, RateBurst: 5, Audit: audit})
	p := dialPeer(t, addr)
	p.send(dataFrames(20))
	answered, limited := 0, 0
	for range 20 {
		f := p.nextSkipping()
		switch f.Type {
		case "data":
			answered++
		case "error":
			expectError(t, f, protocol.CodeRateLimited, f.ID)
			limited++
		}
	}
	if answered < 5 || answered > 6 || limited != 20-answered {
		t.Fatalf("%d answered, %d rate limited", answered, limited)
	}
	p.send(`{"type":"ping","id":"p"}` + "\n") // pings are not data: never limited
	expectFrame(t, p.nextSkipping(), "pong", "p", "")
	if !audit.has(AuditRateLimited, "") {
		t.Fatal("no rate_limited audit event")
	}
}

func TestMaxConnsPerIP(t *testing.T) {
	srv, addr := startServer(t, Config{MaxConnsPerIP: 2})
	a, b := dialPeer(t, addr), dialPeer(t, addr)
	testutil.Eventually(t, "two connections", func() bool { return srv.ConnectionCount() == 2 })
	c := dialPeer(t, addr)
	expectFrame(t, c.next(), "close", "", `{"reason":"too many connections from this address"}`)
	c.expectEOF()
	a.nc.Close()
	testutil.Eventually(t, "a slot to free", func() bool { return srv.ConnectionCount() == 1 })
	d := dialPeer(t, addr)
	d.send(`{"type":"ping","id":"d"}` + "\n")
	expectFrame(t, d.nextSkipping(), "pong", "d", "")
	b.send(`{"type":"ping","id":"b"}` + "\n")
	expectFrame(t, b.nextSkipping(), "pong", "b", "")
}

// tlsFixture makes a CA, server and client certificates in a directory.
type tlsFixture struct {
	dir string
}

func newTLSFixture(t *testing.T, clients ...string) *tlsFixture {
	t.Helper()
	dir := t.TempDir()
	if err := devcert.Write(dir, devcert.Options{Hosts: []string{"localhost", "127.0.0.1"}, Clients: clients}); err != nil {
		t.Fatal(err)
	}
	return &tlsFixture{dir: dir}
}

func (f *tlsFixture) path(name string) string { return filepath.Join(f.dir, name) }

func (f *tlsFixture) serverConfig(t *testing.T, mTLS bool) *tls.Config {
	t.Helper()
	files := ServerTLS{CertFile: f.path("server.pem"), KeyFile: f.path("server-key.pem")}
	if mTLS {
		files.ClientCAFile = f.path("ca.pem")
	}
	cfg, err := NewServerTLSConfig(files)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

func (f *tlsFixture) client(t *testing.T, client string) *tls.Config {
	t.Helper()
	c := ClientTLS{CAFile: f.path("ca.pem")}
	if client != "" {
		c.CertFile, c.KeyFile = f.path(client+".pem"), f.path(client+"-key.pem")
	}
	cfg, err := NewClientTLSConfig(c)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// tlsPeer dials with TLS and returns a peer, or the handshake error.
func tlsPeer(t *testing.T, addr string, cfg *tls.Config) (*peer, error) {
	t.Helper()
	nc, err := tls.DialWithDialer(&net.Dialer{Timeout: waitTimeout}, "tcp", addr, cfg)
	if err != nil {
		return nil, err
	}
	// TLS 1.3 reports a rejected client certificate on the first read.
	p := &peer{t: t, nc: nc, r: bufio.NewReaderSize(nc, 1<<16)}
	t.Cleanup(func() { nc.Close() })
	return p, nil
}

func TestTLSAndMutualTLS(t *testing.T) {
	certs := newTLSFixture(t, "agent-a")
	audit := &auditBuffer{}
	srv, addr := startServer(t, Config{TLSConfig: certs.serverConfig(t, true), HandshakeTimeout: 300 * time.Millisecond,
		Auth: authConfig(nil), Audit: audit})

	// A client certificate from the CA is identity enough: no auth frame.
	p, err := tlsPeer(t, addr, certs.client(t, "agent-a"))
	if err != nil {
		t.Fatal(err)
	}
	p.send(`{"type":"data","payload":"over tls","id":"1"}` + "\n")
	expectFrame(t, p.nextSkipping(), "data", "1", `"over tls"`)
	testutil.Eventually(t, "the certificate identity", func() bool {
		for _, in := range srv.Connections() {
			if c := srv.Conn(in.ID); c != nil && c.Identity() == "agent-a" {
				return true
			}
		}
		return false
	})
	// An auth frame is still accepted when it names the same identity.
	p.send(`{"type":"auth","payload":{"token":"token-a"},"id":"a"}` + "\n")
	expectFrame(t, p.nextSkipping(), "auth", "a", `{"ok":true,"identity":"agent-a"}`)
	p.send(`{"type":"auth","payload":{"token":"token-b"},"id":"b"}` + "\n")
	expectError(t, p.nextSkipping(), protocol.CodeUnauthorized, "b")

	// No client certificate: the handshake fails.
	expectRejected(t, addr, certs.client(t, ""), "a client without a certificate")

	// A certificate from another CA is rejected.
	other := newTLSFixture(t, "agent-a")
	otherCfg := other.client(t, "agent-a")
	otherCfg.RootCAs = certs.client(t, "").RootCAs // trusts our server, presents a foreign client cert
	expectRejected(t, addr, otherCfg, "a certificate from an unknown CA")

	// An expired certificate from the right CA is rejected.
	expectRejected(t, addr, expiredClientCert(t, certs), "an expired certificate")

	// A plaintext client on the TLS port is dropped, and so is one that
	// stalls in the handshake; neither disturbs the TLS client.
	// The plaintext client is told, in plaintext, that the port speaks TLS.
	plain := dialPeer(t, addr)
	plain.send(`{"type":"ping","id":"p"}` + "\n")
	expectError(t, plain.next(), protocol.CodeTLSRequired, "")
	expectFrame(t, plain.next(), "close", "", `{"reason":"tls required"}`)
	plain.expectEOF()
	start := time.Now()
	stalled := dialPeer(t, addr)
	if _, err := stalled.read(waitTimeout); err == nil || isTimeout(err) || time.Since(start) > 5*time.Second {
		t.Fatalf("a stalled handshake was kept for %v (%v)", time.Since(start), err)
	}
	p.send(`{"type":"ping","id":"after"}` + "\n")
	expectFrame(t, p.nextSkipping(), "pong", "after", "")
	if !audit.has(AuditAuthOK, "agent-a") {
		t.Fatal("no auth_ok audit for the certificate")
	}
}

// expectRejected checks that a TLS client is refused: its handshake fails,
// or the server hangs up instead of answering a ping.
func expectRejected(t *testing.T, addr string, cfg *tls.Config, who string) {
	t.Helper()
	q, err := tlsPeer(t, addr, cfg)
	if err != nil {
		return
	}
	q.nc.Write([]byte(`{"type":"ping","id":"p"}` + "\n"))
	f, err := q.read(waitTimeout)
	if err == nil {
		t.Fatalf("%s was served: %s", who, f.raw)
	}
	if isTimeout(err) {
		t.Fatalf("%s was neither served nor refused", who)
	}
}

// expiredClientCert signs an already expired client certificate with the
// fixture's CA.
func expiredClientCert(t *testing.T, certs *tlsFixture) *tls.Config {
	t.Helper()
	caPair, err := tls.LoadX509KeyPair(certs.path("ca.pem"), certs.path("ca-key.pem"))
	if err != nil {
		t.Fatal(err)
	}
	ca, err := x509.ParseCertificate(caPair.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	opts := devcert.Options{NotBefore: time.Now().Add(-48 * time.Hour), NotAfter: time.Now().Add(-24 * time.Hour)}
	cert, key, err := devcert.Leaf(ca, caPair.PrivateKey.(*ecdsa.PrivateKey), "agent-a", []string{"agent-a"}, x509.ExtKeyUsageClientAuth, opts)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := devcert.WritePair(dir, "old", cert, key); err != nil {
		t.Fatal(err)
	}
	cfg, err := NewClientTLSConfig(ClientTLS{CAFile: certs.path("ca.pem"), CertFile: filepath.Join(dir, "old.pem"), KeyFile: filepath.Join(dir, "old-key.pem")})
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

func TestCertificateRotation(t *testing.T) {
	certs := newTLSFixture(t)
	_, addr := startServer(t, Config{TLSConfig: certs.serverConfig(t, false)})
	serial := func() string {
		nc, err := tls.Dial("tcp", addr, certs.client(t, ""))
		if err != nil {
			t.Fatal(err)
		}
		defer nc.Close()
		return nc.ConnectionState().PeerCertificates[0].SerialNumber.String()
	}
	before := serial()
	// Rotate: a new server certificate from the same CA, written in place.
	rotated := t.TempDir()
	caPair, _ := tls.LoadX509KeyPair(certs.path("ca.pem"), certs.path("ca-key.pem"))
	ca, _ := x509.ParseCertificate(caPair.Certificate[0])
	cert, key, err := devcert.Leaf(ca, caPair.PrivateKey.(*ecdsa.PrivateKey), "samgw server", []string{"localhost", "127.0.0.1"}, x509.ExtKeyUsageServerAuth, devcert.Options{NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	if err := devcert.WritePair(rotated, "server", cert, key); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"server.pem", "server-key.pem"} {
		src, _ := os.ReadFile(filepath.Join(rotated, name))
		if err := os.WriteFile(certs.path(name), src, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	testutil.Eventually(t, "the rotated certificate to be served", func() bool { return serial() != before })
	if serial() != cert.SerialNumber.String() {
		t.Fatal("the served certificate is not the rotated one")
	}
}

func TestClientWithTokenTLSAndSigning(t *testing.T) {
	certs := newTLSFixture(t)
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	_, addr := startServer(t, Config{TLSConfig: certs.serverConfig(t, false), Auth: authConfig(pub)})
	c := newTestClient(t, ClientConfig{Addr: addr, TLS: certs.client(t, ""), Token: "token-s", SignKey: priv})
	if err := c.Connect(testCtx(t)); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		reply, err := c.Request(testCtx(t), map[string]int{"n": i})
		if err != nil || string(reply.Payload) != fmt.Sprintf(`{"n":%d}`, i) {
			t.Fatalf("signed request: %v %v", reply, err)
		}
	}
	bad := newTestClient(t, ClientConfig{Addr: addr, TLS: certs.client(t, ""), Token: "wrong"})
	err := bad.Connect(testCtx(t))
	var pe *protocol.Error
	if !errors.As(err, &pe) || pe.Code != protocol.CodeUnauthorized {
		t.Fatalf("Connect with a wrong token: %v", err)
	}
	unsigned := newTestClient(t, ClientConfig{Addr: addr, TLS: certs.client(t, ""), Token: "token-s"})
	if err := unsigned.Connect(testCtx(t)); err != nil {
		t.Fatal(err)
	}
	if _, err := unsigned.Request(testCtx(t), 1); !errors.As(err, &pe) || pe.Code != protocol.CodeBadSignature {
		t.Fatalf("unsigned request from a signing identity: %v", err)
	}
}

func TestAuditLogWritesJSONLinesWithoutSecrets(t *testing.T) {
	var out testutil.SyncBuffer
	log := NewAuditLog(&out, 0)
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	_, addr := startServer(t, Config{Auth: authConfig(pub), Audit: log, Rate: 1, RateBurst: 1})
	p := dialPeer(t, addr)
	p.send(`{"type":"auth","payload":{"token":"token-s"},"id":"a"}` + "\n")
	expectFrame(t, p.nextSkipping(), "auth", "a", "")
	secretPayload := `{"secret":"do-not-log-me"}`
	p.send(signedFrame(t, priv, protocol.Message{Type: protocol.TypeData, ID: "1", Timestamp: protocol.Now(), Payload: []byte(secretPayload)}))
	expectFrame(t, p.nextSkipping(), "data", "1", "")
	p.send(`{"type":"data","payload":{"secret":"do-not-log-me"},"id":"2"}` + "\n") // rate limited
	expectError(t, p.nextSkipping(), protocol.CodeRateLimited, "2")
	q := dialPeer(t, addr)
	q.send(`{"type":"auth","payload":{"token":"token-a-wrong"},"id":"a"}` + "\n")
	expectError(t, q.nextSkipping(), protocol.CodeUnauthorized, "a")
	expectFrame(t, q.nextSkipping(), "close", "", `{"reason":"unauthorized"}`)
	q.expectEOF()
	p.send(`{"type":"close"}` + "\n")
	expectFrame(t, p.nextSkipping(), "close", "", "")
	p.expectEOF()
	testutil.Eventually(t, "the disconnects to be audited", func() bool { return strings.Count(out.String(), `"event":"disconnect"`) == 2 })
	if err := log.Close(); err != nil {
		t.Fatal(err)
	}
	text := out.String()
	for _, event := range []string{"connect", "auth_ok", "auth_failed", "rate_limited", "disconnect"} {
		if !strings.Contains(text, `"event":"`+event+`"`) {
			t.Errorf("no %s event in:\n%s", event, text)
		}
	}
	for _, secret := range []string{"token-s", "token-a-wrong", "do-not-log-me", base64.StdEncoding.EncodeToString(pub), tokenHash("token-s")} {
		if strings.Contains(text, secret) {
			t.Errorf("the audit log contains a secret %q:\n%s", secret, text)
		}
	}
	for _, line := range bytes.Split(bytes.TrimSpace([]byte(text)), []byte("\n")) {
		var e map[string]any
		if err := json.Unmarshal(line, &e); err != nil || e["time"] == "" || e["event"] == "" {
			t.Fatalf("bad audit line %s: %v", line, err)
		}
	}
	if !strings.Contains(text, `"identity":"signer"`) || !strings.Contains(text, `"remote":"127.0.0.1:`) {
		t.Fatalf("audit lines lack identity or remote:\n%s", text)
	}
}

func TestAuditLogDropsInsteadOfBlocking(t *testing.T) {
	block := make(chan struct{})
	log := NewAuditLog(blockingWriter{block}, 2)
	for range 100 {
		log.Audit(AuditEvent{Event: "connect"})
	}
	if log.Dropped() < 90 {
		t.Fatalf("%d dropped, want most of 100 with a queue of 2 and a stuck writer", log.Dropped())
	}
	close(block)
	log.Close()
}

type blockingWriter struct{ block chan struct{} }

func (w blockingWriter) Write(p []byte) (int, error) {
	<-w.block
	return len(p), nil
}

func TestInvalidAuthConfig(t *testing.T) {
	for _, ids := range [][]Identity{
		{{Name: "", TokenSHA256: tokenHash("x")}},
		{{Name: "a", TokenSHA256: "zz"}},
		{{Name: "a"}, {Name: "a"}},
		{{Name: "a", PublicKey: "short"}},
		{{Name: "a", Routes: []string{"["}}},
	} {
		if _, err := NewServer(Config{Auth: &AuthConfig{Identities: ids}}); err == nil {
			t.Errorf("identities %+v accepted", ids)
		}
	}
}
