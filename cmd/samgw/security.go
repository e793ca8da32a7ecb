package main

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/urfave/cli/v2"
	"gopkg.in/yaml.v3"

	"github.com/secureagentmessaging/samgw/gateway"
	"github.com/secureagentmessaging/samgw/internal/devcert"
	"github.com/secureagentmessaging/samgw/protocol"
)

// serveSecurityFlags are the TLS, authentication and limit flags of serve.
func serveSecurityFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "tls-cert", Usage: "server certificate (PEM); with --tls-key, serve TLS", EnvVars: envVar("tls-cert")},
		&cli.StringFlag{Name: "tls-key", Usage: "server private key (PEM)", EnvVars: envVar("tls-key")},
		&cli.StringFlag{Name: "tls-client-ca", Usage: "require client certificates signed by this CA (mTLS)", EnvVars: envVar("tls-client-ca")},
		&cli.DurationFlag{Name: "handshake-timeout", Value: gateway.DefaultHandshakeTimeout, Usage: "drop a TLS handshake that takes longer", EnvVars: envVar("handshake-timeout")},
		&cli.StringFlag{Name: "identities", Usage: "YAML file of identities (and roles): turns authentication on; reloaded on SIGHUP and when it changes", EnvVars: envVar("identities")},
		&cli.StringFlag{Name: "max-frame-unauthenticated", Value: "8KiB", Usage: "largest frame accepted before a connection has authenticated", EnvVars: envVar("max-frame-unauthenticated")},
		&cli.IntFlag{Name: "max-unauthenticated", Usage: "connections allowed in their TLS handshake or authentication at once; the oldest is closed to admit a new one (default: a quarter of --max-conns)", EnvVars: envVar("max-unauthenticated")},
		&cli.DurationFlag{Name: "auth-timeout", Value: gateway.DefaultAuthTimeout, Usage: "how long a connection may take to authenticate", EnvVars: envVar("auth-timeout")},
		&cli.DurationFlag{Name: "max-skew", Value: gateway.DefaultMaxSkew, Usage: "clock skew allowed on signed messages (their ids are remembered for twice this)", EnvVars: envVar("max-skew")},
		&cli.IntFlag{Name: "replay-cap", Usage: "signed message ids remembered per identity within the replay window; beyond it new signed messages get replay (0: sized for the window at --rate, or 100000)", EnvVars: envVar("replay-cap")},
		&cli.StringFlag{Name: "audit-log", Usage: "append security events to this file as JSON lines", EnvVars: envVar("audit-log")},
		&cli.Float64Flag{Name: "rate", Usage: "data frames per second allowed per connection (0: unlimited)", EnvVars: envVar("rate")},
		&cli.IntFlag{Name: "rate-burst", Usage: "data frames allowed at once above the rate (default: the rate)", EnvVars: envVar("rate-burst")},
		&cli.IntFlag{Name: "max-conns-per-ip", Usage: "connections allowed from one address (0: unlimited)", EnvVars: envVar("max-conns-per-ip")},
	}
}

// clientSecurityFlags are the TLS, token and signing flags of client, send
// and bench.
func clientSecurityFlags() []cli.Flag {
	return []cli.Flag{
		&cli.BoolFlag{Name: "tls", Usage: "connect with TLS", EnvVars: envVar("tls")},
		&cli.StringFlag{Name: "tls-ca", Usage: "CA that signed the server's certificate (default: system roots)", EnvVars: envVar("tls-ca")},
		&cli.StringFlag{Name: "tls-cert", Usage: "client certificate, for mTLS", EnvVars: envVar("tls-cert")},
		&cli.StringFlag{Name: "tls-key", Usage: "client certificate's key", EnvVars: envVar("tls-key")},
		&cli.StringFlag{Name: "tls-server-name", Usage: "name to verify in the server's certificate", EnvVars: envVar("tls-server-name")},
		&cli.StringFlag{Name: "token", Usage: "bearer token to authenticate with", EnvVars: envVar("token")},
		&cli.StringFlag{Name: "sign-key", Usage: "Ed25519 private key file (from samgw keygen) to sign data frames with", EnvVars: envVar("sign-key")},
	}
}

// clientSecurity applies the client security flags to cfg.
func clientSecurity(cctx *cli.Context, cfg *gateway.ClientConfig) error {
	useTLS := cctx.Bool("tls") || cctx.String("tls-ca") != "" || cctx.String("tls-cert") != ""
	if useTLS {
		tlsCfg, err := gateway.NewClientTLSConfig(gateway.ClientTLS{
			CAFile: cctx.String("tls-ca"), CertFile: cctx.String("tls-cert"), KeyFile: cctx.String("tls-key"),
			ServerName: cctx.String("tls-server-name"),
		})
		if err != nil {
			return err
		}
		cfg.TLS = tlsCfg
	}
	cfg.Token = cctx.String("token")
	if file := cctx.String("sign-key"); file != "" {
		key, err := loadSignKey(file)
		if err != nil {
			return err
		}
		cfg.SignKey = key
	}
	return nil
}

// loadSignKey reads a PKCS#8 PEM Ed25519 private key.
func loadSignKey(file string) (ed25519.PrivateKey, error) {
	src, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("--sign-key: %w", err)
	}
	key, err := gateway.ParseSignKey(src)
	if err != nil {
		return nil, fmt.Errorf("--sign-key %s: %w", file, err)
	}
	return key, nil
}

func certsCommand() *cli.Command {
	return &cli.Command{
		Name:  "certs",
		Usage: "make a development CA, a server certificate and client certificates",
		Description: "Without --force nothing that exists is replaced: with a CA already in --dir, --clients adds\n" +
			"client certificates signed by it (and the server certificate is made only if missing).",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "dir", Value: "certs", Usage: "output directory"},
			&cli.StringFlag{Name: "hosts", Value: "localhost,127.0.0.1", Usage: "server names and addresses, comma-separated"},
			&cli.StringFlag{Name: "clients", Usage: "client certificate names, comma-separated"},
			&cli.DurationFlag{Name: "valid-for", Value: 365 * 24 * time.Hour, Usage: "validity"},
			&cli.BoolFlag{Name: "force", Usage: "replace an existing CA and certificates (clients of the old CA stop working)"},
		},
		Action: func(cctx *cli.Context) error {
			dir := cctx.String("dir")
			opts := devcert.Options{Hosts: splitList(cctx.String("hosts")), Clients: splitList(cctx.String("clients"))}
			opts.NotBefore = time.Now().Add(-time.Hour)
			opts.NotAfter = time.Now().Add(cctx.Duration("valid-for"))
			if len(opts.Hosts) == 0 {
				return errors.New("--hosts: at least one name or address")
			}
			force := cctx.Bool("force")
			if _, _, err := devcert.LoadCA(dir); err == nil && !force {
				if len(opts.Clients) == 0 {
					return fmt.Errorf("certs: %s already has a CA: pass --clients NAME to add client certificates signed by it, or --force to replace it (every certificate it signed stops working)", dir)
				}
				if _, err := os.Stat(filepath.Join(dir, "server.pem")); err == nil && !cctx.IsSet("hosts") {
					opts.Hosts = nil // keep the server certificate; only add clients
				}
			}
			written, err := devcert.Ensure(dir, opts, force)
			if errors.Is(err, devcert.ErrExists) {
				return fmt.Errorf("%w (pass --force to replace it)", err)
			}
			if err != nil {
				return err
			}
			fmt.Fprintf(cctx.App.Writer, "wrote %s to %s\n", strings.Join(written, " "), dir)
			return nil
		},
	}
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

func tokenCommand() *cli.Command {
	return &cli.Command{
		Name:      "token",
		Usage:     "make a 256-bit bearer token and the identities entry for it",
		ArgsUsage: "NAME",
		Action: func(cctx *cli.Context) error {
			name := cctx.Args().First()
			if cctx.NArg() != 1 || name == "" {
				return errors.New("token: want exactly one NAME")
			}
			var b [32]byte
			rand.Read(b[:]) //nolint:errcheck // crypto/rand.Read never fails
			token := base64.RawURLEncoding.EncodeToString(b[:])
			sum := sha256.Sum256([]byte(token))
			entry, err := yaml.Marshal([]tokenEntry{{Name: name, TokenSHA256: hex.EncodeToString(sum[:])}})
			if err != nil {
				return err
			}
			fmt.Fprintf(cctx.App.Writer, "%s\n# add to the identities file (the token itself is not stored):\n%s", token, entry)
			return nil
		},
	}
}

func keygenCommand() *cli.Command {
	return &cli.Command{
		Name:  "keygen",
		Usage: "make an Ed25519 key pair for signing messages",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "out", Required: true, Usage: "PREFIX: writes PREFIX.key (private, 0600) and PREFIX.pub (base64 public key)"},
			&cli.BoolFlag{Name: "force", Usage: "replace an existing key pair (what was signed with the old key no longer verifies)"},
		},
		Action: func(cctx *cli.Context) error {
			prefix, force := cctx.String("out"), cctx.Bool("force")
			if !force {
				for _, file := range []string{prefix + ".key", prefix + ".pub"} {
					if _, err := os.Lstat(file); err == nil {
						return fmt.Errorf("keygen: %s already exists: pass --force to replace the key pair (the identities entry holding its public key must change too)", file)
					}
				}
			}
			pub, priv, err := ed25519.GenerateKey(rand.Reader)
			if err != nil {
				return err
			}
			der, err := x509.MarshalPKCS8PrivateKey(priv)
			if err != nil {
				return err
			}
			if err := writeKeyFile(prefix+".key", pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600, force); err != nil {
				return fmt.Errorf("keygen: %w", err)
			}
			pubText := base64.StdEncoding.EncodeToString(pub)
			if err := writeKeyFile(prefix+".pub", []byte(pubText+"\n"), 0o644, force); err != nil {
				return fmt.Errorf("keygen: %w", err)
			}
			fmt.Fprintf(cctx.App.Writer, "wrote %s.key and %s.pub\npublic_key: %s\n", prefix, prefix, pubText)
			return nil
		},
	}
}

// writeKeyFile writes data to file with perm. Without force it creates the
// file exclusively, so a key made meanwhile by another run is never
// replaced; with force it replaces the file, and perm applies even when the
// old file had wider permissions.
func writeKeyFile(file string, data []byte, perm os.FileMode, force bool) error {
	flags := os.O_WRONLY | os.O_CREATE | os.O_EXCL
	if force {
		if err := os.Remove(file); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
	}
	f, err := os.OpenFile(file, flags, perm)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// fixHint says what the user can do about an error the server answered, if
// the flags can change it: " (…)" or "".
func fixHint(pe *protocol.Error, cfg gateway.ClientConfig) string {
	switch {
	case pe.Code == protocol.CodeTLSRequired && cfg.TLS == nil:
		return " (the server expects TLS: use --tls, or --tls-ca with its CA)"
	case pe.Code == protocol.CodeUnauthorized && cfg.Token == "" && cfg.TLS == nil:
		return " (the server requires authentication: pass --token or set SAMGW_TOKEN)"
	}
	return ""
}
