package gateway

import (
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
	"time"

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
}

// authority checks tokens, routes and signatures for a server.
type authority struct {
	byName  map[string]*principal
	all     []*principal
	maxSkew time.Duration
	replay  ReplayGuard
}

// principal is an identity ready for checks, with its replay window.
type principal struct {
	name      string
	tokenHash []byte
	routes    []string
	key       ed25519.PublicKey
	seen      *replayCache // signed message ids within the window; nil without a key
}

// newAuthority prepares cfg's identities; rate and burst (the server's
// per-connection limit) size the replay windows when cfg.ReplayCap is zero.
func newAuthority(cfg *AuthConfig, rate float64, burst int) (*authority, error) {
	a := &authority{byName: make(map[string]*principal), maxSkew: cfg.MaxSkew, replay: cfg.Replay}
	if a.maxSkew <= 0 {
		a.maxSkew = DefaultMaxSkew
	}
	if cfg.ReplayCap < 0 {
		return nil, fmt.Errorf("replay cap %d: must not be negative", cfg.ReplayCap)
	}
	limit := cfg.ReplayCap
	if limit == 0 {
		limit = replayCap(rate, burst, a.window())
	}
	for _, id := range cfg.Identities {
		if id.Name == "" {
			return nil, fmt.Errorf("identity without a name")
		}
		if _, dup := a.byName[id.Name]; dup {
			return nil, fmt.Errorf("identity %q: listed twice", id.Name)
		}
		p := &principal{name: id.Name, routes: id.Routes}
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
			p.seen = newReplayCache(a.window(), limit)
		}
		a.byName[id.Name] = p
		a.all = append(a.all, p)
	}
	return a, nil
}

// window is how long signed ids are remembered: a message is accepted while
// its timestamp is within maxSkew of the clock, so a copy can arrive up to
// twice that after the first.
func (a *authority) window() time.Duration { return 2 * a.maxSkew }

// close stops the replay windows' timers.
func (a *authority) close() {
	for _, p := range a.all {
		if p.seen != nil {
			p.seen.close()
		}
	}
}

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
	for _, p := range a.all {
		if p.tokenHash != nil && subtle.ConstantTimeCompare(sum[:], p.tokenHash) == 1 {
			found = p
		}
	}
	return found
}

// allows reports whether the identity may send data to route.
func (p *principal) allows(route string) bool {
	if p.routes == nil {
		return true
	}
	if route == "" {
		route = "default"
	}
	for _, pattern := range p.routes {
		if ok, _ := path.Match(pattern, route); ok {
			return true
		}
	}
	return false
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
