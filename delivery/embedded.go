package delivery

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	natsserver "github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

// ErrDataDirInUse: another process serves from the same data directory.
var ErrDataDirInUse = errors.New("delivery: data directory in use")

// Embedded is a NATS server with JetStream running inside this process, on
// file storage under a data directory, with no network listener: samgw
// reaches it through an in-process connection. It is what makes durable
// delivery work with nothing else installed.
type Embedded struct {
	srv  *natsserver.Server
	lock *os.File
	dir  string
}

// EmbeddedConfig configures the embedded server.
type EmbeddedConfig struct {
	// Dir holds the store (created if missing). Required.
	Dir string
	// SyncAlways flushes every write to the disk before it is acked, so a
	// stored message survives a power loss too (a killed process loses
	// nothing either way: writes are in the operating system's cache).
	SyncAlways bool
	// MaxStore bounds the disk the store may use (0: JetStream's default).
	MaxStore int64
}

// StartEmbedded starts the server and waits until it is ready. One
// process at a time may use a data directory.
func StartEmbedded(cfg EmbeddedConfig) (*Embedded, error) {
	if cfg.Dir == "" {
		return nil, fmt.Errorf("%w: the data directory is required", ErrInvalidConfig)
	}
	dir, err := filepath.Abs(cfg.Dir)
	if err != nil {
		return nil, fmt.Errorf("delivery: data directory: %w", err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("delivery: create the data directory: %w", err)
	}
	lock, err := lockDir(dir)
	if err != nil {
		return nil, err
	}
	opts := &natsserver.Options{
		ServerName:         "samgw-embedded",
		DontListen:         true,
		JetStream:          true,
		StoreDir:           dir,
		JetStreamMaxStore:  cfg.MaxStore,
		JetStreamMaxMemory: 64 << 20,
		SyncAlways:         cfg.SyncAlways,
		NoSigs:             true,
		NoLog:              true,
		MaxPayload:         8 << 20,
	}
	srv, err := natsserver.NewServer(opts)
	if err != nil {
		lock.Close()
		return nil, fmt.Errorf("delivery: embedded NATS server: %w", err)
	}
	srv.Start()
	if !srv.ReadyForConnections(30 * time.Second) {
		srv.Shutdown()
		lock.Close()
		return nil, fmt.Errorf("delivery: the embedded NATS server did not start within 30s (store %s)", dir)
	}
	return &Embedded{srv: srv, lock: lock, dir: dir}, nil
}

// Dir returns the absolute data directory.
func (e *Embedded) Dir() string { return e.dir }

// Connect opens an in-process connection to the server.
func (e *Embedded) Connect(name string) (*nats.Conn, error) {
	nc, err := nats.Connect("", nats.InProcessServer(e.srv), nats.Name(name), nats.MaxReconnects(-1))
	if err != nil {
		return nil, fmt.Errorf("delivery: connect to the embedded NATS server: %w", err)
	}
	return nc, nil
}

// Shutdown stops the server (its store is consistent on disk) and frees
// the data directory.
func (e *Embedded) Shutdown() {
	e.srv.Shutdown()
	e.srv.WaitForShutdown()
	e.lock.Close()
}
