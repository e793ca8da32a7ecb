package main

import (
	"bytes"
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestCertsNeverReplaceWithoutForce(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "certs")
	read := func(name string) []byte {
		t.Helper()
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	if code, _, errOut := runSamgw(t, "", "certs", "--dir", dir, "--clients", "agent-a"); code != 0 {
		t.Fatal(errOut)
	}
	ca, server, agentA := read("ca.pem"), read("server.pem"), read("agent-a.pem")

	t.Run("again without --clients is refused", func(t *testing.T) {
		code, _, errOut := runSamgw(t, "", "certs", "--dir", dir)
		if code == 0 || !strings.Contains(errOut, "already has a CA") || !strings.Contains(errOut, "--force") {
			t.Fatalf("exit %d: %s", code, errOut)
		}
	})
	t.Run("an existing client is refused", func(t *testing.T) {
		code, _, errOut := runSamgw(t, "", "certs", "--dir", dir, "--clients", "agent-a")
		if code == 0 || !strings.Contains(errOut, "agent-a.pem") || !strings.Contains(errOut, "--force") {
			t.Fatalf("exit %d: %s", code, errOut)
		}
	})
	t.Run("explicit --hosts with a server certificate is refused", func(t *testing.T) {
		code, _, errOut := runSamgw(t, "", "certs", "--dir", dir, "--hosts", "gw.example", "--clients", "agent-z")
		if code == 0 || !strings.Contains(errOut, "server.pem") {
			t.Fatalf("exit %d: %s", code, errOut)
		}
	})
	if !bytes.Equal(read("ca.pem"), ca) || !bytes.Equal(read("server.pem"), server) || !bytes.Equal(read("agent-a.pem"), agentA) {
		t.Fatal("a refused run changed existing files")
	}

	t.Run("--clients adds certificates signed by the existing CA", func(t *testing.T) {
		code, out, errOut := runSamgw(t, "", "certs", "--dir", dir, "--clients", "agent-b")
		if code != 0 {
			t.Fatal(errOut)
		}
		if !strings.Contains(out, "agent-b.pem") || strings.Contains(out, "ca.pem") || strings.Contains(out, "server.pem") {
			t.Fatalf("wrote: %s", out)
		}
		if !bytes.Equal(read("ca.pem"), ca) || !bytes.Equal(read("server.pem"), server) {
			t.Fatal("the CA or the server certificate changed")
		}
		pool := x509.NewCertPool()
		pool.AppendCertsFromPEM(ca)
		block, _ := pem.Decode(read("agent-b.pem"))
		cert, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := cert.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
			t.Fatalf("agent-b is not signed by the existing CA: %v", err)
		}
	})
	t.Run("--force replaces", func(t *testing.T) {
		if code, _, errOut := runSamgw(t, "", "certs", "--dir", dir, "--force"); code != 0 {
			t.Fatal(errOut)
		}
		if bytes.Equal(read("ca.pem"), ca) || bytes.Equal(read("server.pem"), server) {
			t.Fatal("--force kept the old CA or server certificate")
		}
	})
}

// TestKeygenNeverReplacesWithoutForce: a second keygen to the same prefix
// (a walkthrough pasted twice) keeps the pair the identities file names.
func TestKeygenNeverReplacesWithoutForce(t *testing.T) {
	prefix := filepath.Join(t.TempDir(), "agent")
	if code, _, errOut := runSamgw(t, "", "keygen", "--out", prefix); code != 0 {
		t.Fatal(errOut)
	}
	key, _ := os.ReadFile(prefix + ".key")
	pub, _ := os.ReadFile(prefix + ".pub")
	code, _, errOut := runSamgw(t, "", "keygen", "--out", prefix)
	if code == 0 || !strings.Contains(errOut, "agent.key already exists") || !strings.Contains(errOut, "--force") {
		t.Fatalf("second keygen: exit %d, %q", code, errOut)
	}
	if k, _ := os.ReadFile(prefix + ".key"); string(k) != string(key) {
		t.Fatal("the refused keygen changed the private key")
	}
	os.Remove(prefix + ".key") // a lone public key is not replaced either
	if code, _, errOut := runSamgw(t, "", "keygen", "--out", prefix); code == 0 || !strings.Contains(errOut, "agent.pub already exists") {
		t.Fatalf("keygen over a lone .pub: exit %d, %q", code, errOut)
	}
	os.Chmod(prefix+".pub", 0o666)
	if code, _, errOut := runSamgw(t, "", "keygen", "--out", prefix, "--force"); code != 0 {
		t.Fatal(errOut)
	}
	newPub, _ := os.ReadFile(prefix + ".pub")
	info, err := os.Stat(prefix + ".key")
	if string(newPub) == string(pub) || err != nil || info.Mode().Perm() != 0o600 {
		t.Fatalf("--force: same public key %v, key file %v %v", string(newPub) == string(pub), info, err)
	}
}
