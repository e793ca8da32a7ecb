package gateway

import (
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"errors"
	"strconv"
	"testing"
	"time"

	"github.com/secureagentmessaging/samgw/access"
	"github.com/secureagentmessaging/samgw/protocol"
)

// FuzzAuthChecks feeds arbitrary tokens, ids, routes, payloads and
// signatures through the authentication and signature checks: they never
// panic, only a correct signature over exactly those bytes passes, and a
// passed message never passes twice.
func FuzzAuthChecks(f *testing.F) {
	f.Add("token-a", "id-1", "chat", []byte(`{"a":1}`), "", true, int16(0))
	f.Add("", "", "", []byte(nil), "not base64", false, int16(100))
	f.Add("token-s", "x", "r", []byte(`[1, 2]`), base64.StdEncoding.EncodeToString(make([]byte, 64)), false, int16(-3000))
	seed := make([]byte, ed25519.SeedSize)
	key := ed25519.NewKeyFromSeed(seed)
	a, err := newAuthority(authConfig(key.Public().(ed25519.PublicKey)), 0, 0)
	if err != nil {
		f.Fatal(err)
	}
	signer := a.byName("signer")
	var n int
	f.Fuzz(func(t *testing.T, token, id, route string, payload []byte, sig string, signIt bool, skewMs int16) {
		a.byToken(token)
		protocol.ParseAuthToken(payload)
		signer.allows(access.KindRoute, route)
		n++
		m := protocol.Message{Type: protocol.TypeData, ID: id + "#" + strconv.Itoa(n), Route: route, Payload: payload,
			Timestamp: time.Now().UnixMilli() + int64(skewMs), Sig: sig}
		if signIt {
			m.Sig = base64.StdEncoding.EncodeToString(ed25519.Sign(key, protocol.AppendSigned(nil, &m)))
		}
		full := signer.seen.held() >= signer.seen.cap
		_, err := a.verify(context.Background(), signer, &m, nil)
		valid := signIt || verifiesAnyway(key, &m)
		switch {
		case len(m.ID) > MaxSignedIDLen:
			// Refused, whichever check comes first (a missing sig is
			// reported before the id's length), and never remembered.
			if !errors.Is(err, &protocol.Error{Code: protocol.CodeInvalidMessage}) && !errors.Is(err, &protocol.Error{Code: protocol.CodeBadSignature}) {
				t.Fatalf("a %d-byte signed id got %v, want invalid_message or bad_signature", len(m.ID), err)
			}
			return
		case full:
			// A full replay window refuses every new id, right or wrong.
			if err == nil {
				t.Fatal("a message passed a full replay window")
			}
			return
		case valid && err != nil:
			t.Fatalf("a correct signature failed: %v", err)
		case !valid && err == nil:
			t.Fatalf("a wrong signature %q passed", sig)
		case err != nil && !errors.Is(err, &protocol.Error{Code: protocol.CodeBadSignature}):
			t.Fatalf("unexpected error %v", err)
		}
		if err == nil {
			if _, again := a.verify(context.Background(), signer, &m, nil); !errors.Is(again, &protocol.Error{Code: protocol.CodeReplay}) {
				t.Fatalf("the same message passed twice: %v", again)
			}
		}
	})
}

// verifiesAnyway reports whether a fuzzed sig happens to be valid.
func verifiesAnyway(key ed25519.PrivateKey, m *protocol.Message) bool {
	sig, err := base64.StdEncoding.DecodeString(m.Sig)
	return err == nil && len(sig) == ed25519.SignatureSize && ed25519.Verify(key.Public().(ed25519.PublicKey), protocol.AppendSigned(nil, m), sig)
}
