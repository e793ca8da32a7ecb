// Package conformance runs the client conformance scenario's servers: a
// plain and an mTLS `samgw serve` built from this repository, with the
// identities, tokens, signing key and certificates the scenario names. The
// Go test in this package and the TypeScript and Python test suites (through
// cmd/harness) run the same steps.json against them, so the three clients
// cannot drift apart.
package conformance

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Server names used by steps.json.
const (
	ServerPlain = "plain"
	ServerTLS   = "tls"
)

// ErrUnknownServer is returned for a server name steps.json does not use.
var ErrUnknownServer = errors.New("unknown server")

// Fixture is what a client needs to run the steps: where the servers
// listen and the credentials the steps name. It is printed as JSON by
// cmd/harness.
type Fixture struct {
	// Servers maps a server name to its host:port.
	Servers map[string]string `json:"servers"`
	// CA is the PEM file of the CA that signed the TLS server's certificate
	// and the client certificates.
	CA string `json:"ca"`
	// Certs maps a client certificate name to its PEM certificate and key.
	Certs map[string]CertFiles `json:"certs"`
	// Tokens maps a token name (an identity, or "wrong") to the token.
	Tokens map[string]string `json:"tokens"`
	// SignKeys maps an identity to its Ed25519 private key (PKCS#8 PEM).
	SignKeys map[string]string `json:"sign_keys"`
	// HTTP is the plain server's --http-listen (WebSocket at /v1/ws, which
	// allows pages from http://127.0.0.1:*), Metrics its --metrics-listen
	// (/status): for the browser test.
	HTTP    string `json:"http"`
	Metrics string `json:"metrics"`
}

// CertFiles is a client certificate and its key.
type CertFiles struct {
	Cert string `json:"cert"`
	Key  string `json:"key"`
}

// Servers is the running pair of servers.
type Servers struct {
	Fixture Fixture
	bin     string
	dir     string
	logs    io.Writer
	args    map[string][]string

	mu    sync.Mutex
	procs map[string]*process
}

// BuildSamgw returns the samgw binary to run: $SAMGW_BIN when set, else one
// built from the module root into dir.
func BuildSamgw(ctx context.Context, moduleRoot, dir string) (string, error) {
	if bin := os.Getenv("SAMGW_BIN"); bin != "" {
		return bin, nil
	}
	bin := filepath.Join(dir, "samgw")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/samgw")
	cmd.Dir = moduleRoot
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("build samgw: %w\n%s", err, out)
	}
	return bin, nil
}

// Start writes the fixture into dir (certificates, keys, identities) and
// starts both servers on free loopback ports. scripts is the Lua handler
// directory (this package's scripts/); server logs go to logs.
func Start(ctx context.Context, bin, dir, scripts string, logs io.Writer) (*Servers, error) {
	s := &Servers{bin: bin, dir: dir, logs: logs, procs: make(map[string]*process), args: make(map[string][]string)}
	if err := s.writeFixture(ctx); err != nil {
		return nil, err
	}
	common := []string{"--scripts", scripts, "--identities", filepath.Join(dir, "identities.yaml"),
		"--shutdown-timeout", "3s", "--log-level", "warn"}
	var err error
	if s.Fixture.HTTP, err = freePort(); err != nil {
		return nil, err
	}
	if s.Fixture.Metrics, err = freePort(); err != nil {
		return nil, err
	}
	s.args[ServerPlain] = append(append([]string{}, common...), "--topic-history", "news.*=100",
		"--http-listen", s.Fixture.HTTP, "--ws-origins", "http://127.0.0.1:*", "--metrics-listen", s.Fixture.Metrics)
	s.args[ServerTLS] = append(append([]string{}, common...), "--tls-cert", filepath.Join(dir, "server.pem"),
		"--tls-key", filepath.Join(dir, "server-key.pem"), "--tls-client-ca", s.Fixture.CA)
	for _, name := range []string{ServerPlain, ServerTLS} {
		addr, err := freePort()
		if err != nil {
			return nil, err
		}
		s.Fixture.Servers[name] = addr
		if err := s.StartServer(ctx, name); err != nil {
			s.Close()
			return nil, err
		}
	}
	return s, nil
}

// writeFixture makes the certificates (with samgw certs), the signing key
// (samgw keygen), the tokens and the identities file.
func (s *Servers) writeFixture(ctx context.Context) error {
	run := func(args ...string) error {
		out, err := exec.CommandContext(ctx, s.bin, args...).CombinedOutput()
		if err != nil {
			return fmt.Errorf("samgw %s: %w\n%s", strings.Join(args, " "), err, out)
		}
		return nil
	}
	if err := run("certs", "--dir", s.dir, "--hosts", "localhost,127.0.0.1", "--clients", "agent-c", "--force"); err != nil {
		return err
	}
	if err := run("keygen", "--out", filepath.Join(s.dir, "agent-b")); err != nil {
		return err
	}
	pub, err := os.ReadFile(filepath.Join(s.dir, "agent-b.pub"))
	if err != nil {
		return fmt.Errorf("fixture: %w", err)
	}
	s.Fixture = Fixture{
		Servers:  make(map[string]string),
		CA:       filepath.Join(s.dir, "ca.pem"),
		Certs:    map[string]CertFiles{"agent-c": {Cert: filepath.Join(s.dir, "agent-c.pem"), Key: filepath.Join(s.dir, "agent-c-key.pem")}},
		Tokens:   map[string]string{"agent-a": newToken(), "agent-b": newToken(), "agent-d": newToken(), "wrong": newToken()},
		SignKeys: map[string]string{"agent-b": filepath.Join(s.dir, "agent-b.key")},
	}
	identities := fmt.Sprintf(`identities:
  - name: agent-a
    token_sha256: %s
  - name: agent-b
    token_sha256: %s
    public_key: %q
  - name: agent-c
    token_sha256: %s
  - name: agent-d
    token_sha256: %s
`, tokenHash(s.Fixture.Tokens["agent-a"]), tokenHash(s.Fixture.Tokens["agent-b"]), strings.TrimSpace(string(pub)), tokenHash(newToken()),
		tokenHash(s.Fixture.Tokens["agent-d"]))
	if err := os.WriteFile(filepath.Join(s.dir, "identities.yaml"), []byte(identities), 0o600); err != nil {
		return fmt.Errorf("fixture: %w", err)
	}
	return nil
}

// StartServer starts the named server on its port and waits until it
// accepts connections.
func (s *Servers) StartServer(ctx context.Context, name string) error {
	args, ok := s.args[name]
	if !ok {
		return fmt.Errorf("start %q: %w", name, ErrUnknownServer)
	}
	addr := s.Fixture.Servers[name]
	// Its own data directory, kept across a restart of the same server.
	dataDir := filepath.Join(s.dir, name+".data")
	cmd := exec.Command(s.bin, append([]string{"serve", "--listen", addr, "--data-dir", dataDir}, args...)...)
	cmd.Stdout, cmd.Stderr = s.logs, s.logs
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", name, err)
	}
	p := &process{cmd: cmd, exited: make(chan struct{})}
	go func() { // the one owner of Wait
		p.err = cmd.Wait()
		close(p.exited)
	}()
	if err := waitAccepting(ctx, addr, p.exited); err != nil {
		cmd.Process.Kill() //nolint:errcheck // giving up on it
		<-p.exited
		return fmt.Errorf("start %s: %w (exit: %v)", name, err, p.err)
	}
	s.mu.Lock()
	s.procs[name] = p
	s.mu.Unlock()
	return nil
}

// process is a running samgw serve; exited is closed once it is reaped.
type process struct {
	cmd    *exec.Cmd
	exited chan struct{}
	err    error
}

// waitAccepting dials addr until it accepts, the process exits, or 15 s
// pass.
func waitAccepting(ctx context.Context, addr string, exited <-chan struct{}) error {
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	retry := time.NewTicker(20 * time.Millisecond)
	defer retry.Stop()
	for {
		if nc, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			return nc.Close()
		}
		select {
		case <-exited:
			return errors.New("samgw serve exited")
		case <-ctx.Done():
			return fmt.Errorf("not accepting on %s: %w", addr, ctx.Err())
		case <-retry.C:
		}
	}
}

// StopServer shuts the named server down gracefully (SIGTERM: its clients
// get close "server shutdown") and waits until it has exited, so its port
// is free for StartServer.
func (s *Servers) StopServer(name string) error {
	s.mu.Lock()
	p := s.procs[name]
	delete(s.procs, name)
	s.mu.Unlock()
	if p == nil {
		return fmt.Errorf("stop %q: %w (or not running)", name, ErrUnknownServer)
	}
	p.cmd.Process.Signal(syscall.SIGTERM) //nolint:errcheck // exited already is fine
	timer := time.NewTimer(10 * time.Second)
	defer timer.Stop()
	select {
	case <-p.exited:
	case <-timer.C:
		p.cmd.Process.Kill() //nolint:errcheck // last resort
		<-p.exited
	}
	return nil
}

// Close stops every server.
func (s *Servers) Close() {
	s.mu.Lock()
	names := make([]string, 0, len(s.procs))
	for name := range s.procs {
		names = append(names, name)
	}
	s.mu.Unlock()
	for _, name := range names {
		s.StopServer(name) //nolint:errcheck // closing
	}
}

func newToken() string {
	var b [32]byte
	rand.Read(b[:]) //nolint:errcheck // crypto/rand.Read never fails
	return hex.EncodeToString(b[:])
}

func tokenHash(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:])
}

// freePort returns a loopback address no one listens on now.
func freePort() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("free port: %w", err)
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}
