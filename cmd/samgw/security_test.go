package main

import (
	"bufio"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/secureagentmessaging/samgw/internal/testutil"
)

func TestSecureDeployment(t *testing.T) {
	dir := t.TempDir()
	certs := filepath.Join(dir, "certs")
	if code, out, errOut := runSamgw(t, "", "certs", "--dir", certs, "--hosts", "localhost,127.0.0.1", "--clients", "agent-a,agent-b"); code != 0 {
		t.Fatalf("certs: %d %s %s", code, out, errOut)
	}
	for _, f := range []string{"ca.pem", "ca-key.pem", "server.pem", "server-key.pem", "agent-a.pem", "agent-a-key.pem", "agent-b.pem", "agent-b-key.pem"} {
		info, err := os.Stat(filepath.Join(certs, f))
		if err != nil {
			t.Fatal(err)
		}
		if strings.HasSuffix(f, "-key.pem") && info.Mode().Perm() != 0o600 {
			t.Errorf("%s has mode %v", f, info.Mode().Perm())
		}
	}

	// A token for agent-a, and a signing key for agent-b.
	code, out, errOut := runSamgw(t, "", "token", "agent-a")
	if code != 0 {
		t.Fatalf("token: %s", errOut)
	}
	lines := strings.SplitN(out, "\n", 2)
	token, entryA := lines[0], lines[1]
	if len(token) < 40 || !strings.Contains(entryA, "- name: agent-a") || !strings.Contains(entryA, "token_sha256: ") || strings.Contains(entryA, token) {
		t.Fatalf("token output:\n%s", out)
	}
	code, out, errOut = runSamgw(t, "", "token", "agent-b")
	if code != 0 {
		t.Fatal(errOut)
	}
	lines = strings.SplitN(out, "\n", 2)
	tokenB, entryB := lines[0], lines[1]
	keyPrefix := filepath.Join(dir, "agent-b")
	if code, _, errOut := runSamgw(t, "", "keygen", "--out", keyPrefix); code != 0 {
		t.Fatal(errOut)
	}
	if info, err := os.Stat(keyPrefix + ".key"); err != nil || info.Mode().Perm() != 0o600 {
		t.Fatalf("private key: %v %v", info, err)
	}
	pub, err := os.ReadFile(keyPrefix + ".pub")
	if err != nil {
		t.Fatal(err)
	}
	identities := filepath.Join(dir, "identities.yaml")
	writeFile(t, identities, "identities:\n"+indent(entryA)+indent(entryB)+
		"    routes: [\"default\", \"chat.*\"]\n    public_key: "+strings.TrimSpace(string(pub))+"\n")

	audit := filepath.Join(dir, "audit.log")
	addr, log, stop := startServe(t, "--tls-cert", filepath.Join(certs, "server.pem"), "--tls-key", filepath.Join(certs, "server-key.pem"),
		"--identities", identities, "--audit-log", audit)
	if !strings.Contains(log.String(), "tls=true auth=true") {
		t.Fatalf("log: %s", log.String())
	}
	tlsArgs := []string{"--tls-ca", filepath.Join(certs, "ca.pem"), "--tls-server-name", "localhost"}
	t.Run("a token over TLS, a signed message", func(t *testing.T) {
		if got := sendOK(t, addr, append(tlsArgs, "--token", token, `{"hi":"a"}`)...); got != `{"hi":"a"}` {
			t.Fatalf("agent-a: %s", got)
		}
		if got := sendOK(t, addr, append(tlsArgs, "--token", tokenB, "--sign-key", keyPrefix+".key", `"signed"`)...); got != `"signed"` {
			t.Fatalf("agent-b signed: %s", got)
		}
	})
	t.Run("refusals", func(t *testing.T) {
		fail := func(args []string, want string) {
			t.Helper()
			code, _, errOut := runSamgw(t, "", append([]string{"send", "--addr", addr}, args...)...)
			if code == 0 || !strings.Contains(errOut, want) {
				t.Errorf("send %v: exit %d, stderr %q, want %q", args, code, errOut, want)
			}
		}
		fail(append(tlsArgs, "--token", tokenB, `"unsigned"`), "bad_signature")
		fail(append(tlsArgs, "--token", tokenB, "--sign-key", keyPrefix+".key", "--route", "admin", `1`), "forbidden")
		fail(append(tlsArgs, "--token", "wrong", `1`), "unauthorized")
		fail([]string{"--token", token, `1`}, "") // plaintext to a TLS port
		fail(append(tlsArgs, `1`), "unauthorized")
	})
	t.Run("mTLS identifies agent-a without a token", func(t *testing.T) {
		addr2, _, _ := startServe(t, "--tls-cert", filepath.Join(certs, "server.pem"), "--tls-key", filepath.Join(certs, "server-key.pem"),
			"--tls-client-ca", filepath.Join(certs, "ca.pem"), "--identities", identities)
		if got := sendOK(t, addr2, append(tlsArgs, "--tls-cert", filepath.Join(certs, "agent-a.pem"), "--tls-key", filepath.Join(certs, "agent-a-key.pem"), `1`)...); got != `1` {
			t.Fatalf("mTLS: %s", got)
		}
	})
	if code := stop(); code != 0 {
		t.Fatalf("serve exit %d", code)
	}
	t.Run("the audit log has the events and no secret", func(t *testing.T) {
		checkAuditLog(t, audit, []string{token, tokenB, "signed", strings.TrimSpace(string(pub))})
	})
}

// checkAuditLog reads a JSON-lines audit log: every line parses, the
// deployment's events are there, and no secret is.
func checkAuditLog(t *testing.T, audit string, secrets []string) {
	f, err := os.Open(audit)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	events := map[string]int{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var e struct{ Event string }
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			t.Fatalf("audit line %s: %v", sc.Text(), err)
		}
		events[e.Event]++
		for _, secret := range secrets {
			if strings.Contains(sc.Text(), secret) {
				t.Fatalf("audit line holds a secret: %s", sc.Text())
			}
		}
	}
	for _, ev := range []string{"connect", "auth_ok", "auth_failed", "bad_signature", "forbidden", "disconnect", "scripts_reloaded"} {
		if events[ev] == 0 {
			t.Errorf("no %s in the audit log: %v", ev, events)
		}
	}
}

func indent(entry string) string {
	var b strings.Builder
	for _, line := range strings.Split(strings.TrimRight(entry, "\n"), "\n") {
		if strings.HasPrefix(line, "#") {
			continue
		}
		b.WriteString("  " + line + "\n")
	}
	return b.String()
}

func TestServeSecurityFlagErrors(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "ids.yaml")
	writeFile(t, bad, "- name: a\n  token_sha256: abc\n  rutes: [x]\n")
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"--tls-cert", "x.pem"}, "go together"},
		{[]string{"--tls-cert", "missing.pem", "--tls-key", "missing-key.pem"}, "missing.pem"},
		{[]string{"--identities", bad}, "rutes"},
		{[]string{"--identities", filepath.Join(dir, "none.yaml")}, "--identities"},
		{[]string{"--rate", "-1"}, "negative"},
	} {
		code, _, errOut := runSamgw(t, "", append([]string{"serve", "--listen", "127.0.0.1:0"}, tt.args...)...)
		if code == 0 || !strings.Contains(errOut, tt.want) {
			t.Errorf("serve %v: exit %d, stderr %q, want %q", tt.args, code, errOut, tt.want)
		}
	}
}

func TestNonLoopbackWarning(t *testing.T) {
	_, log, _ := startServe(t, "--listen", "0.0.0.0:0")
	testutil.Eventually(t, "the warnings", func() bool {
		return strings.Contains(log.String(), "without TLS") && strings.Contains(log.String(), "without --identities")
	})
}

// TestSendNamesTheFix: a plaintext send to a TLS port, and one without a
// token to a server that wants one, say what to pass.
func TestSendNamesTheFix(t *testing.T) {
	dir := t.TempDir()
	certs := filepath.Join(dir, "certs")
	if code, _, errOut := runSamgw(t, "", "certs", "--dir", certs); code != 0 {
		t.Fatal(errOut)
	}
	identities := filepath.Join(dir, "identities.yaml")
	writeFile(t, identities, "- name: a\n  token_sha256: "+strings.Repeat("0", 64)+"\n")
	tlsAddr, _, _ := startServe(t, "--tls-cert", filepath.Join(certs, "server.pem"), "--tls-key", filepath.Join(certs, "server-key.pem"))
	authAddr, _, _ := startServe(t, "--identities", identities)
	for _, tt := range []struct {
		addr, want string
		args       []string
	}{
		{tlsAddr, "the server expects TLS: use --tls, or --tls-ca with its CA", nil},
		{tlsAddr, "the server expects TLS: use --tls, or --tls-ca with its CA", []string{"--token", "t"}},
		{authAddr, "the server requires authentication: pass --token or set SAMGW_TOKEN", nil},
	} {
		code, _, errOut := runSamgw(t, "", append(append([]string{"send", "--addr", tt.addr}, tt.args...), "1")...)
		if code == 0 || !strings.Contains(errOut, tt.want) {
			t.Errorf("send to %s: exit %d, stderr %q, want %q", tt.addr, code, errOut, tt.want)
		}
	}
}

// TestClientNamesTheFix: a scenario against a server that wants a token
// stops at once and says what to pass.
func TestClientNamesTheFix(t *testing.T) {
	identities := filepath.Join(t.TempDir(), "identities.yaml")
	writeFile(t, identities, "- name: a\n  token_sha256: "+strings.Repeat("0", 64)+"\n")
	addr, _, _ := startServe(t, "--identities", identities)
	code, _, errOut := runSamgw(t, "", "client", "--addr", addr, "--time-scale", "0.01")
	if code == 0 || !strings.Contains(errOut, "the server refused the connection: unauthorized") ||
		!strings.Contains(errOut, "pass --token or set SAMGW_TOKEN") {
		t.Fatalf("exit %d, stderr %q", code, errOut)
	}
}
