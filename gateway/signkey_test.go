package gateway

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"testing"
)

func TestParseSignKey(t *testing.T) {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	pkcs8 := func(key any) []byte {
		der, err := x509.MarshalPKCS8PrivateKey(key)
		if err != nil {
			t.Fatal(err)
		}
		return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
	}
	ec, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := x509.MarshalPKIXPublicKey(priv.Public())
	if err != nil {
		t.Fatal(err)
	}
	t.Run("ed25519 PKCS#8", func(t *testing.T) {
		got, err := ParseSignKey(pkcs8(priv))
		if err != nil || !got.Equal(priv) {
			t.Fatalf("got %v, %v", got, err)
		}
	})
	for name, src := range map[string][]byte{
		"not PEM":    []byte("uyw03wQQX32JZpa1GCWMGhPaYx3t+ccuT7gxHU1fpvU="),
		"ECDSA key":  pkcs8(ec),
		"public key": pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pub}),
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := ParseSignKey(src); !errors.Is(err, ErrSignKey) {
				t.Fatalf("err = %v, want ErrSignKey", err)
			}
		})
	}
}
