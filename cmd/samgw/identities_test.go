package main

import (
	"bufio"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/secureagentmessaging/samgw/gateway"
)

func TestIdentitiesFileRoutes(t *testing.T) {
	const token = "token_sha256: 3b5d5c3712955042212316173ccf37be800b7a93a1f26d5d1a7a8d4e4fdc3c2e"
	cases := []struct {
		name, file string
		routes     []string
		err        error
	}{
		{"absent: every route", "- name: a\n  " + token + "\n", nil, nil},
		{"listed", "- name: a\n  " + token + "\n  routes: [chat, \"chat.*\"]\n", []string{"chat", "chat.*"}, nil},
		{"empty list", "- name: a\n  " + token + "\n  routes: []\n", nil, errEmptyRoutes},
		{"null", "- name: a\n  " + token + "\n  routes:\n", nil, errEmptyRoutes},
		{"explicit null", "- name: a\n  " + token + "\n  routes: null\n", nil, errEmptyRoutes},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			file := filepath.Join(t.TempDir(), "identities.yaml")
			writeFile(t, file, tc.file)
			f, err := loadIdentities(file)
			if !errors.Is(err, tc.err) {
				t.Fatalf("error %v, want %v", err, tc.err)
			}
			if err != nil {
				return
			}
			ids := f.Identities
			if strings.Join(ids[0].Routes, ",") != strings.Join(tc.routes, ",") || (ids[0].Routes == nil) != (tc.routes == nil) {
				t.Fatalf("routes %#v, want %#v", ids[0].Routes, tc.routes)
			}
		})
	}
	t.Run("serve refuses to start", func(t *testing.T) {
		file := filepath.Join(t.TempDir(), "identities.yaml")
		writeFile(t, file, "identities:\n  - name: a\n    "+token+"\n    routes: []\n")
		code, _, errOut := runSamgw(t, "", "serve", "--listen", "127.0.0.1:0", "--identities", file)
		if code == 0 || !strings.Contains(errOut, "routes is present but empty") {
			t.Fatalf("exit %d: %s", code, errOut)
		}
	})
}

// TestIdentitiesPublicKeyForms: every form an operator is likely to paste
// loads, and each names the same key.
func TestIdentitiesPublicKeyForms(t *testing.T) {
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	pemText := string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
	forms := map[string]string{
		"raw base64 (samgw keygen)":         base64.StdEncoding.EncodeToString(pub),
		"SPKI DER base64":                   base64.StdEncoding.EncodeToString(der),
		"PEM (openssl pkey -pubout), block": "|\n    " + strings.ReplaceAll(strings.TrimSpace(pemText), "\n", "\n    "),
	}
	for name, value := range forms {
		t.Run(name, func(t *testing.T) {
			file := filepath.Join(t.TempDir(), "identities.yaml")
			writeFile(t, file, "- name: signer\n  public_key: "+value+"\n")
			f, err := loadIdentities(file)
			if err != nil {
				t.Fatal(err)
			}
			ids := f.Identities
			key, err := gateway.ParsePublicKey(ids[0].PublicKey)
			if err != nil || !key.Equal(pub) {
				t.Fatalf("parsed %x, %v; want %x", key, err, pub)
			}
			if _, err := gateway.NewServer(gateway.Config{Auth: &gateway.AuthConfig{Identities: ids}}); err != nil {
				t.Fatalf("the server refused the key: %v", err)
			}
		})
	}
}

// TestReadmeIdentitiesExampleLoads: the identities file docs/security.md
// shows is one the server accepts, public key included.
func TestReadmeIdentitiesExampleLoads(t *testing.T) {
	readme, err := os.ReadFile("../../docs/security.md")
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(readme), "   # identities.yaml\n")
	if !ok {
		t.Fatal("no identities.yaml example in docs/security.md")
	}
	block, _, _ := strings.Cut(rest, "   ```")
	file := filepath.Join(t.TempDir(), "identities.yaml")
	writeFile(t, file, block)
	f, err := loadIdentities(file)
	if err != nil {
		t.Fatalf("docs/security.md's example does not load: %v\n%s", err, block)
	}
	ids := f.Identities
	if _, err := gateway.NewServer(gateway.Config{Auth: &gateway.AuthConfig{Identities: ids}}); err != nil {
		t.Fatalf("the server refuses docs/security.md's example: %v", err)
	}
	if len(ids) != 2 || ids[1].PublicKey == "" || len(ids[1].Routes) != 3 {
		t.Fatalf("parsed %+v", ids)
	}
}

// TestServeAppliesTheUnauthenticatedLimits: --max-frame-unauthenticated
// reaches the server: a frame past it before authenticating is refused.
func TestServeAppliesTheUnauthenticatedLimits(t *testing.T) {
	file := filepath.Join(t.TempDir(), "identities.yaml")
	writeFile(t, file, "- name: a\n  token_sha256: "+strings.Repeat("0", 64)+"\n")
	addr, _, _ := startServe(t, "--identities", file, "--max-frame-unauthenticated", "100B", "--max-unauthenticated", "5")
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	nc.SetDeadline(time.Now().Add(5 * time.Second))
	fmt.Fprintf(nc, `{"type":"auth","payload":{"token":"%s"}}`+"\n", strings.Repeat("t", 200))
	line, err := bufio.NewReader(nc).ReadString('\n')
	if err != nil || !strings.Contains(line, "frame_too_large") || !strings.Contains(line, "100 bytes") {
		t.Fatalf("got %q, %v; want frame_too_large at 100 bytes", line, err)
	}
}
