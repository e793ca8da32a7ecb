package gateway

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"path"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/secureagentmessaging/samgw/access"
	"github.com/secureagentmessaging/samgw/protocol"
)

// DefaultMaxSkew is how far a signed message's timestamp may be from the
// server's clock, and how long its id is remembered against replays.
const DefaultMaxSkew = 2 * time.Minute

// Identity is an agent allowed to connect when authentication is on.
type Identity struct {
	// Name identifies the agent in logs, audit events and conn.identity.
	Name string
	// TokenSHA256 is the hex SHA-256 of its bearer token; the token itself
	// is never stored. Empty for identities that only connect with a client
	// certificate.
	TokenSHA256 string
	// Routes are glob patterns (path.Match) of the routes it may send data
	// to; the route of a frame without one is "default". Nil allows all;
	// an empty, non-nil list allows none.
	Routes []string
	// PublicKey, when set, is the Ed25519 key that must sign every data
	// frame of this identity: the base64 of the raw 32 bytes (what samgw
	// keygen writes), or of the SPKI DER form, or that form's PEM (what
	// openssl pkey -pubout writes).
	PublicKey string
	// Roles are the names of its roles (AuthConfig.Roles).
	Roles []string
}

// AuthConfig turns authentication on: every connection must prove one of
// the identities, by an auth frame with a token or by a client certificate.
type AuthConfig struct {
	Identities []Identity
	// MaxSkew bounds the clock difference of signed messages; zero means
	// DefaultMaxSkew. Signed ids are remembered for twice as long.
	MaxSkew time.Duration
	// ReplayCap bounds the signed ids remembered per identity within the
	// window; beyond it new signed messages get replay. Zero sizes it for
	// the window at the server's Rate (see replayCap), or DefaultReplayCap.
	ReplayCap int
	// Replay, when set, also checks signed ids across a cluster, so a
	// signed frame is accepted once, not once per node. When it fails the
	// message is refused with cluster_unavailable.
	Replay ReplayGuard
	// Roles, when not nil (even empty), turns roles on: what no role of an
	// identity (and no Routes of its own) grants is refused, routes by the
	// gateway and publish, subscribe and direct messages by the handler
	// through Conn.Check. Nil keeps the identities' Routes as the only
	// rule.
	Roles map[string]access.Role
}

// authority checks tokens, routes and signatures for a server. Its
// identities can be replaced while it serves (Server.SetIdentities).
type authority struct {
	table   atomic.Pointer[identityTable]
	mu      sync.Mutex // serialises replacements of table
	maxSkew time.Duration
	replay  ReplayGuard
	limit   int // replay cap of each signing identity
	closed  bool
}

// identityTable is one version of the identities: replaced whole.
type identityTable struct {
	byName map[string]*principal
	all    []*principal
	roles  bool // roles are on
}

// principal is an identity ready for checks, with its replay window.
type principal struct {
	name      string
	tokenHash []byte
	routes    []string
	grant     *access.Grant // nil: roles are off
	key       ed25519.PublicKey
	seen      *replayCache // signed message ids within the window; nil without a key
	// slot is shared by the versions of this identity that reloads kept
	// (same token and key): it points at the latest, so a connection
	// follows a reload at its next message in one step, however many
	// reloads it slept through. revoked is set instead when a reload
	// removed the identity or changed how it proves itself.
	slot    *principalSlot
	revoked atomic.Bool
}

// principalSlot holds the latest version of an identity.
type principalSlot struct {
	latest atomic.Pointer[principal]
}

// newAuthority prepares cfg's identities; rate and burst (the server's
// per-connection limit) size the replay windows when cfg.ReplayCap is zero.
func newAuthority(cfg *AuthConfig, rate float64, burst int) (*authority, error) {
	a := &authority{maxSkew: cfg.MaxSkew, replay: cfg.Replay}
	if a.maxSkew <= 0 {
		a.maxSkew = DefaultMaxSkew
	}
	if cfg.ReplayCap < 0 {
		return nil, fmt.Errorf("replay cap %d: must not be negative", cfg.ReplayCap)
	}
	a.limit = cfg.ReplayCap
	if a.limit == 0 {
		a.limit = replayCap(rate, burst, a.window())
	}
	t, err := a.newTable(cfg.Identities, cfg.Roles)
	if err != nil {
		return nil, err
	}
	a.table.Store(t)
	return a, nil
}

// newTable checks and prepares identities and roles. Replay windows are
// made later, by adopt.
func (a *authority) newTable(ids []Identity, roles map[string]access.Role) (*identityTable, error) {
	t := &identityTable{byName: make(map[string]*principal, len(ids)), roles: roles != nil}
	var policy *access.Policy
	if roles != nil {
		members := make(map[string][]string, len(ids))
		for _, id := range ids {
			members[id.Name] = id.Roles
		}
		var err error
		if policy, err = access.Compile(roles, members); err != nil {
			return nil, err
		}
	}
	for _, id := range ids {
		if id.Name == "" {
			return nil, fmt.Errorf("identity without a name")
		}
		if _, dup := t.byName[id.Name]; dup {
			return nil, fmt.Errorf("identity %q: listed twice", id.Name)
		}
		if policy == nil && len(id.Roles) > 0 {
			return nil, fmt.Errorf("identity %q: has roles, but no roles are defined", id.Name)
		}
		p := &principal{name: id.Name, routes: id.Routes, slot: &principalSlot{}}
		p.slot.latest.Store(p)
		if policy != nil {
			p.grant = policy.Grant(id.Name)
		}
		if id.TokenSHA256 != "" {
			h, err := hex.DecodeString(id.TokenSHA256)
			if err != nil || len(h) != sha256.Size {
				return nil, fmt.Errorf("identity %q: token_sha256 must be 64 hex digits", id.Name)
			}
			p.tokenHash = h
		}
		for _, pattern := range id.Routes {
			if _, err := path.Match(pattern, ""); err != nil {
				return nil, fmt.Errorf("identity %q: route pattern %q: %w", id.Name, pattern, err)
			}
		}
		if id.PublicKey != "" {
			k, err := ParsePublicKey(id.PublicKey)
			if err != nil {
				return nil, fmt.Errorf("identity %q: public_key: %w", id.Name, err)
			}
			p.key = k
			p.seen = newReplayCache(a.window(), a.limit)
		}
		t.byName[id.Name] = p
		t.all = append(t.all, p)
	}
	return t, nil
}

// replace puts t in place of the current identities. An identity that
// proves itself the same way keeps its replay window (a reload must not
// let a signed message be replayed) and its connections move to the new
// principal; the others are revoked, and their connections are returned
// to be closed.
func (a *authority) replace(t *identityTable) (revoked []*principal, err error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.closed {
		return nil, ErrServerClosed
	}
	old := a.table.Load()
	for _, p := range old.all {
		n := t.byName[p.name]
		if n == nil || !bytes.Equal(n.tokenHash, p.tokenHash) || !n.key.Equal(p.key) {
			p.revoked.Store(true)
			revoked = append(revoked, p)
			if p.seen != nil {
				p.seen.close()
			}
			continue
		}
		if p.seen != nil {
			n.seen.close()
			n.seen = p.seen
		}
		n.slot = p.slot
		n.slot.latest.Store(n)
	}
	a.table.Store(t)
	return revoked, nil
}

// current is the latest version of p, after the reloads since p was
// taken; it may be revoked.
func (p *principal) current() *principal { return p.slot.latest.Load() }

// window is how long signed ids are remembered: a message is accepted while
// its timestamp is within maxSkew of the clock, so a copy can arrive up to
// twice that after the first.
func (a *authority) window() time.Duration { return 2 * a.maxSkew }

// close stops the replay windows' timers.
func (a *authority) close() {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.closed = true
	for _, p := range a.table.Load().all {
		if p.seen != nil {
			p.seen.close()
		}
	}
}

// byName returns the identity called name, or nil.
func (a *authority) byName(name string) *principal { return a.table.Load().byName[name] }

// ErrPublicKey is returned for a public key that is not an Ed25519 key in
// one of the accepted forms.
var ErrPublicKey = errors.New("gateway: not an Ed25519 public key (want the base64 of the raw 32 bytes from samgw keygen, or of its SPKI DER form, or a PEM PUBLIC KEY block)")

// ParsePublicKey reads an Ed25519 public key given as the base64 of its 32
// raw bytes, as the base64 of its SPKI DER encoding ("MCowBQYDK2VwAyEA…"),
// or as a PEM "PUBLIC KEY" block.
func ParsePublicKey(s string) (ed25519.PublicKey, error) {
	s = strings.TrimSpace(s)
	var der []byte
	if block, _ := pem.Decode([]byte(s)); block != nil {
		if block.Type != "PUBLIC KEY" {
			return nil, fmt.Errorf("%w: a PEM %q block", ErrPublicKey, block.Type)
		}
		der = block.Bytes
	} else {
		raw, err := base64.StdEncoding.DecodeString(s)
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrPublicKey, err)
		}
		if len(raw) == ed25519.PublicKeySize {
			return ed25519.PublicKey(raw), nil
		}
		der = raw
	}
	key, err := x509.ParsePKIXPublicKey(der)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrPublicKey, err)
	}
	ed, ok := key.(ed25519.PublicKey)
	if !ok {
		return nil, fmt.Errorf("%w: a %T", ErrPublicKey, key)
	}
	return ed, nil
}

// ErrSignKey is returned for a signing key that is not an Ed25519 private
// key in PKCS#8 PEM form.
var ErrSignKey = errors.New("gateway: not an Ed25519 private key (want the PKCS#8 PEM that samgw keygen writes)")

// ParseSignKey reads an Ed25519 private key from its PKCS#8 PEM form (what
// `samgw keygen` writes), for ClientConfig.SignKey.
func ParseSignKey(pemBytes []byte) (ed25519.PrivateKey, error) {
	block, _ := pem.Decode(pemBytes)
	if block == nil {
		return nil, fmt.Errorf("%w: no PEM block", ErrSignKey)
	}
	key, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrSignKey, err)
	}
	ed, ok := key.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("%w: a %T", ErrSignKey, key)
	}
	return ed, nil
}

// byToken returns the identity whose token this is. Every identity's hash
// is compared in constant time, so timing tells nothing about the tokens.
func (a *authority) byToken(token string) *principal {
	if token == "" {
		return nil
	}
	sum := sha256.Sum256([]byte(token))
	var found *principal
	for _, p := range a.table.Load().all {
		if p.tokenHash != nil && subtle.ConstantTimeCompare(sum[:], p.tokenHash) == 1 {
			found = p
		}
	}
	return found
}

// allows reports whether the identity may do the action: a route by its
// own Routes or a role, anything else by a role. Without roles, Routes
// alone decide (nil: every route) and anything else is allowed.
func (p *principal) allows(kind access.Kind, target string) bool {
	if kind != access.KindRoute {
		return p.grant == nil || p.grant.Allows(kind, target)
	}
	if p.grant != nil && p.grant.Allows(kind, target) {
		return true
	}
	if p.routes == nil {
		return p.grant == nil
	}
	if target == "" {
		target = "default"
	}
	for _, pattern := range p.routes {
		if ok, _ := path.Match(pattern, target); ok {
			return true
		}
	}
	return false
}

// roles returns the names of the identity's roles, sorted; nil without.
func (p *principal) roles() []string {
	if p.grant == nil {
		return nil
	}
	return p.grant.Roles()
}

// verify checks a data frame of a signing identity: the signature over the
// exact bytes, the timestamp within the skew, and the id not seen before in
// the window (on this node, and on every node with a ReplayGuard). scratch
// is a buffer to build the signed bytes in.
func (a *authority) verify(ctx context.Context, p *principal, m *protocol.Message, scratch []byte) ([]byte, error) {
	if m.Sig == "" {
		return scratch, protocol.Errorf(protocol.CodeBadSignature, "this identity must sign its messages (sig missing)")
	}
	if m.ID == "" {
		return scratch, protocol.Errorf(protocol.CodeBadSignature, "a signed message needs an id")
	}
	if len(m.ID) > MaxSignedIDLen {
		return scratch, protocol.Errorf(protocol.CodeInvalidMessage, "the id of a signed message is %d bytes; at most %d are allowed", len(m.ID), MaxSignedIDLen)
	}
	scratch, err := protocol.Verify(p.key, m, scratch)
	if err != nil {
		return scratch, err
	}
	now := time.Now()
	ts := time.UnixMilli(m.Timestamp)
	if ts.Before(now.Add(-a.maxSkew)) || ts.After(now.Add(a.maxSkew)) {
		return scratch, protocol.Errorf(protocol.CodeReplay, "timestamp outside the allowed skew of %v", a.maxSkew)
	}
	switch p.seen.remember(m.ID, now) {
	case replaySeen:
		return scratch, protocol.Errorf(protocol.CodeReplay, "message id %q was already received", m.ID)
	case replayFull:
		return scratch, protocol.Errorf(protocol.CodeReplay, "too many signed messages from this identity within the replay window (%d): try again later", p.seen.cap)
	}
	if a.replay != nil {
		cctx, cancel := context.WithTimeout(ctx, clusterReplayTimeout)
		fresh, err := a.replay.Claim(cctx, p.name, m.ID, a.window())
		cancel()
		if err != nil {
			p.seen.forget(m.ID) // not accepted: a retry with the same id must not count as a replay here
			return scratch, protocol.Errorf(protocol.CodeClusterUnavailable, "signed messages cannot be checked against replays on other nodes right now")
		}
		if !fresh {
			return scratch, protocol.Errorf(protocol.CodeReplay, "message id %q was already received (by another node)", m.ID)
		}
	}
	return scratch, nil
}

// clusterReplayTimeout bounds the cluster-wide replay check of one message.
const clusterReplayTimeout = 2 * time.Second
