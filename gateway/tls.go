package gateway

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"time"

	"github.com/secureagentmessaging/samgw/protocol"
)

// DefaultHandshakeTimeout bounds a TLS handshake: a plaintext client on a
// TLS port, or one that stalls, is dropped after it.
const DefaultHandshakeTimeout = 5 * time.Second

// ServerTLS are the files of a TLS server. The certificate, key and client
// CA are re-read when their files change, so rotation needs no restart.
type ServerTLS struct {
	CertFile, KeyFile string
	// ClientCAFile, when set, requires and verifies client certificates
	// (mTLS); the client's identity is then the certificate's.
	ClientCAFile string
}

// NewServerTLSConfig checks the files and returns a tls.Config that serves
// their current contents: TLS 1.2 at least, Go's default cipher suites.
func NewServerTLSConfig(files ServerTLS) (*tls.Config, error) {
	r := &certReloader{files: files}
	if _, err := r.current(); err != nil {
		return nil, err
	}
	return &tls.Config{
		MinVersion:         tls.VersionTLS12,
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) { return r.current() },
	}, nil
}

// certReloader rebuilds the server's tls.Config when a file's modification
// time or size changes.
type certReloader struct {
	files ServerTLS
	mu    sync.Mutex
	stamp string
	cfg   *tls.Config
}

func (r *certReloader) current() (*tls.Config, error) {
	stamp, err := r.fileStamp()
	if err != nil {
		return nil, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.cfg != nil && stamp == r.stamp {
		return r.cfg, nil
	}
	cert, err := tls.LoadX509KeyPair(r.files.CertFile, r.files.KeyFile)
	if err != nil {
		if r.cfg != nil {
			return r.cfg, nil // a half-written rotation: keep serving the last good pair
		}
		return nil, fmt.Errorf("tls certificate: %w", err)
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{cert}}
	if r.files.ClientCAFile != "" {
		pool, err := loadCertPool(r.files.ClientCAFile)
		if err != nil {
			if r.cfg != nil {
				return r.cfg, nil
			}
			return nil, err
		}
		cfg.ClientCAs = pool
		cfg.ClientAuth = tls.RequireAndVerifyClientCert
	}
	r.cfg, r.stamp = cfg, stamp
	return cfg, nil
}

// fileStamp summarises the files' modification times and sizes.
func (r *certReloader) fileStamp() (string, error) {
	stamp := ""
	for _, f := range []string{r.files.CertFile, r.files.KeyFile, r.files.ClientCAFile} {
		if f == "" {
			continue
		}
		info, err := os.Stat(f)
		if err != nil {
			return "", fmt.Errorf("tls: %w", err)
		}
		stamp += fmt.Sprintf("%d/%d;", info.ModTime().UnixNano(), info.Size())
	}
	return stamp, nil
}

func loadCertPool(file string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("tls CA: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("tls CA %s: no PEM certificates", file)
	}
	return pool, nil
}

// ClientTLS are the TLS settings of a client.
type ClientTLS struct {
	// CAFile verifies the server; empty means the system roots.
	CAFile string
	// CertFile and KeyFile are the client certificate, for mTLS.
	CertFile, KeyFile string
	// ServerName overrides the name checked in the server's certificate.
	ServerName string
}

// NewClientTLSConfig builds a client tls.Config from files.
func NewClientTLSConfig(c ClientTLS) (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: c.ServerName}
	if c.CAFile != "" {
		pool, err := loadCertPool(c.CAFile)
		if err != nil {
			return nil, err
		}
		cfg.RootCAs = pool
	}
	if (c.CertFile == "") != (c.KeyFile == "") {
		return nil, errors.New("tls: a client certificate needs both the certificate and the key file")
	}
	if c.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(c.CertFile, c.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("tls client certificate: %w", err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return cfg, nil
}

// CertIdentity is the identity a client certificate proves: its first URI
// SAN, else its first DNS SAN, else its subject's common name.
func CertIdentity(cert *x509.Certificate) string {
	switch {
	case len(cert.URIs) > 0:
		return cert.URIs[0].String()
	case len(cert.DNSNames) > 0:
		return cert.DNSNames[0]
	}
	return cert.Subject.CommonName
}

// sniffConn is the socket under a server's TLS connection. Before the
// handshake, sniff reads the first byte: a TLS client starts with a
// handshake record (0x16); anything else is a plaintext client, told so in
// plaintext instead of a handshake error it cannot read. The byte read is
// handed to TLS first.
type sniffConn struct {
	net.Conn
	first []byte // read by sniff, not yet returned by Read
}

// tlsHandshakeRecord is the content type of a TLS handshake record.
const tlsHandshakeRecord = 0x16

// sniff reads the peer's first byte and reports whether it can start TLS.
func (c *sniffConn) sniff(deadline time.Time) (bool, error) {
	var b [1]byte
	c.Conn.SetReadDeadline(deadline) //nolint:errcheck // the read reports it
	if _, err := io.ReadFull(c.Conn, b[:]); err != nil {
		return false, err
	}
	c.Conn.SetReadDeadline(time.Time{}) //nolint:errcheck // as above
	c.first = b[:]
	return b[0] == tlsHandshakeRecord, nil
}

func (c *sniffConn) Read(p []byte) (int, error) {
	if len(c.first) > 0 {
		n := copy(p, c.first)
		c.first = c.first[n:]
		return n, nil
	}
	return c.Conn.Read(p)
}

// refusePlaintext tells a plaintext client that the port speaks TLS, with
// an error frame and a close frame it can read, then hangs up.
func (c *sniffConn) refusePlaintext() {
	msg := protocol.Errorf(protocol.CodeTLSRequired, "this port speaks TLS: connect with TLS (samgw: --tls or --tls-ca)")
	frames := protocol.AppendErrorFrame(nil, "", msg)
	frames = appendCloseFrame(frames, "reason", "tls required")
	c.Conn.SetWriteDeadline(time.Now().Add(time.Second)) //nolint:errcheck // best effort
	c.Conn.Write(frames)                                 //nolint:errcheck // best effort
}
