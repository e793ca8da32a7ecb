// Package devcert makes a local certificate authority with server and client
// certificates, for development and tests (`samgw certs`): ECDSA P-256, PEM
// files.
package devcert

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"
)

// Options say what to make.
type Options struct {
	// Hosts are the server certificate's DNS names and IP addresses.
	Hosts []string
	// Clients are the names of client certificates: each gets <name>.pem
	// and <name>-key.pem, with the name as common name and DNS SAN.
	Clients []string
	// NotBefore and NotAfter bound validity; zero means now-1h and a year.
	NotBefore, NotAfter time.Time
}

// Write makes ca.pem, ca-key.pem, server.pem, server-key.pem and a pair per
// client in dir (created if needed), replacing any that exist. Keys are
// written with mode 0600.
func Write(dir string, opts Options) error {
	_, err := Ensure(dir, opts, true)
	return err
}

// ErrExists is returned when a file would be replaced without force.
var ErrExists = errors.New("certs: file exists")

// Ensure is Write that, unless replace is set, keeps what exists: an
// existing CA (ca.pem and ca-key.pem) signs the new certificates, and a
// file that exists is never overwritten (ErrExists names it), so a running
// server's CA and certificate cannot be replaced by accident. It returns
// the names of the files it wrote.
func Ensure(dir string, opts Options, replace bool) (written []string, err error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("certs: %w", err)
	}
	if opts.NotBefore.IsZero() {
		opts.NotBefore = time.Now().Add(-time.Hour)
	}
	if opts.NotAfter.IsZero() {
		opts.NotAfter = opts.NotBefore.Add(365 * 24 * time.Hour)
	}
	pair := func(name string, cert *x509.Certificate, key *ecdsa.PrivateKey) error {
		if err := WritePair(dir, name, cert, key); err != nil {
			return err
		}
		written = append(written, name+".pem", name+"-key.pem")
		return nil
	}
	ca, caKey, err := LoadCA(dir)
	switch {
	case err == nil && !replace:
	case err == nil || errors.Is(err, fs.ErrNotExist):
		if ca, caKey, err = CA(opts); err != nil {
			return nil, err
		}
		if err := pair("ca", ca, caKey); err != nil {
			return nil, err
		}
	default:
		return nil, err
	}
	if len(opts.Hosts) > 0 {
		if err := refuseExisting(dir, "server", replace); err != nil {
			return written, err
		}
		server, serverKey, err := Leaf(ca, caKey, "samgw server", opts.Hosts, x509.ExtKeyUsageServerAuth, opts)
		if err != nil {
			return written, err
		}
		if err := pair("server", server, serverKey); err != nil {
			return written, err
		}
	}
	for _, name := range opts.Clients {
		if err := refuseExisting(dir, name, replace); err != nil {
			return written, err
		}
		cert, key, err := Leaf(ca, caKey, name, []string{name}, x509.ExtKeyUsageClientAuth, opts)
		if err != nil {
			return written, err
		}
		if err := pair(name, cert, key); err != nil {
			return written, err
		}
	}
	return written, nil
}

// refuseExisting returns ErrExists when <name>.pem or <name>-key.pem
// exists and may not be replaced.
func refuseExisting(dir, name string, replace bool) error {
	if replace {
		return nil
	}
	for _, f := range []string{name + ".pem", name + "-key.pem"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err == nil {
			return fmt.Errorf("%w: %s", ErrExists, filepath.Join(dir, f))
		}
	}
	return nil
}

// LoadCA reads ca.pem and ca-key.pem from dir; the error wraps
// fs.ErrNotExist when there is no CA there.
func LoadCA(dir string) (*x509.Certificate, *ecdsa.PrivateKey, error) {
	pair, err := tls.LoadX509KeyPair(filepath.Join(dir, "ca.pem"), filepath.Join(dir, "ca-key.pem"))
	if err != nil {
		return nil, nil, fmt.Errorf("certs: the CA in %s: %w", dir, err)
	}
	cert, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		return nil, nil, fmt.Errorf("certs: the CA in %s: %w", dir, err)
	}
	key, ok := pair.PrivateKey.(*ecdsa.PrivateKey)
	if !ok || !cert.IsCA {
		return nil, nil, fmt.Errorf("certs: %s is not a CA made by samgw certs", filepath.Join(dir, "ca.pem"))
	}
	return cert, key, nil
}

// CA makes a self-signed certificate authority.
func CA(opts Options) (*x509.Certificate, *ecdsa.PrivateKey, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("certs: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: "samgw development CA"},
		NotBefore:             opts.NotBefore,
		NotAfter:              opts.NotAfter,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, fmt.Errorf("certs: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	return cert, key, err
}

// Leaf makes a certificate signed by ca for the given names (DNS names or
// IP addresses) and usage.
func Leaf(ca *x509.Certificate, caKey *ecdsa.PrivateKey, cn string, names []string, usage x509.ExtKeyUsage, opts Options) (*x509.Certificate, *ecdsa.PrivateKey, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("certs: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: cn},
		NotBefore:    opts.NotBefore,
		NotAfter:     opts.NotAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{usage},
	}
	for _, n := range names {
		if ip := net.ParseIP(n); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, n)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		return nil, nil, fmt.Errorf("certs: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	return cert, key, err
}

func serial() *big.Int {
	n, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 120))
	return n
}

// WritePair writes <name>.pem and <name>-key.pem.
func WritePair(dir, name string, cert *x509.Certificate, key *ecdsa.PrivateKey) error {
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return fmt.Errorf("certs: %w", err)
	}
	if err := os.WriteFile(filepath.Join(dir, name+".pem"), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw}), 0o644); err != nil {
		return fmt.Errorf("certs: %w", err)
	}
	if err := os.WriteFile(filepath.Join(dir, name+"-key.pem"), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		return fmt.Errorf("certs: %w", err)
	}
	return nil
}
