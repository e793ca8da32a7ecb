package protocol

import (
	"crypto/ed25519"
	"encoding/base64"
)

// Sign sets m.Sig to the base64 Ed25519 signature of m's signed bytes (see
// AppendSigned); m.Timestamp must be set first.
func Sign(key ed25519.PrivateKey, m *Message) {
	m.Sig = base64.StdEncoding.EncodeToString(ed25519.Sign(key, AppendSigned(nil, m)))
}

// Verify checks m.Sig against pub over m's signed bytes, building them in
// scratch (returned, grown, for reuse). The error is CodeBadSignature with
// what is wrong.
func Verify(pub ed25519.PublicKey, m *Message, scratch []byte) ([]byte, error) {
	if m.Sig == "" {
		return scratch, Errorf(CodeBadSignature, "this identity must sign its messages (sig missing)")
	}
	// Decode into a buffer of DecodedLen of the sig's length: base64 input
	// of the right length but without padding decodes to more than a
	// signature, and Decode must never write past its buffer (fuzzing found
	// an 88-character unpadded sig that did).
	var buf [68]byte
	if len(m.Sig) != base64.StdEncoding.EncodedLen(ed25519.SignatureSize) {
		return scratch, Errorf(CodeBadSignature, "sig is not a base64 Ed25519 signature")
	}
	n, err := base64.StdEncoding.Decode(buf[:base64.StdEncoding.DecodedLen(len(m.Sig))], []byte(m.Sig))
	if err != nil || n != ed25519.SignatureSize {
		return scratch, Errorf(CodeBadSignature, "sig is not a base64 Ed25519 signature")
	}
	scratch = AppendSigned(scratch[:0], m)
	if !ed25519.Verify(pub, scratch, buf[:n]) {
		return scratch, Errorf(CodeBadSignature, "signature does not verify")
	}
	return scratch, nil
}
