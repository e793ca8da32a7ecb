// Package devcert makes a local certificate authority with server and client
// certificates, for development and tests (`samgw certs`): ECDSA P-256, PEM
// files.
package devcert

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
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
// client in dir (created if needed). Keys are written with mode 0600.
func Write(dir string, opts Options) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("certs: %w", err)
	}
	if opts.NotBefore.IsZero() {
		opts.NotBefore = time.Now().Add(-time.Hour)
	}
	if opts.NotAfter.IsZero() {
		opts.NotAfter = opts.NotBefore.Add(365 * 24 * time.Hour)
	}
	ca, caKey, err := CA(opts)
	if err != nil {
		return err
	}
	if err := WritePair(dir, "ca", ca, caKey); err != nil {
		return err
	}
	server, serverKey, err := Leaf(ca, caKey, "samgw server", opts.Hosts, x509.ExtKeyUsageServerAuth, opts)
	if err != nil {
		return err
	}
	if err := WritePair(dir, "server", server, serverKey); err != nil {
		return err
	}
	for _, name := range opts.Clients {
		cert, key, err := Leaf(ca, caKey, name, []string{name}, x509.ExtKeyUsageClientAuth, opts)
		if err != nil {
			return err
		}
		if err := WritePair(dir, name, cert, key); err != nil {
			return err
		}
	}
	return nil
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
