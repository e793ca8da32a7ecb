package main

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"sync"
	"time"

	"github.com/fsnotify/fsnotify"

	"github.com/secureagentmessaging/samgw/gateway"
)

// identitiesReloader reloads the --identities file into a running server:
// on SIGHUP and when the file changes. A file that fails to load keeps the
// previous identities and says why in the log (file:line).
type identitiesReloader struct {
	file string
	srv  *gateway.Server
	log  *slog.Logger

	mu     sync.Mutex // one reload at a time (SIGHUP and the watcher)
	digest string     // of the file in force
}

// reload loads the file and hands it to the server; onlyChanged skips a
// file whose content is the one in force (a watcher's event that changed
// nothing).
func (r *identitiesReloader) reload(onlyChanged bool) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	f, err := loadIdentities(r.file)
	if err == nil && onlyChanged && f.Digest == r.digest {
		return nil
	}
	closed := 0
	if err == nil {
		closed, err = r.srv.SetIdentities(f.Identities, f.Roles)
	}
	if err != nil {
		r.log.Error("Identities not reloaded; the previous ones stay in force", "file", r.file, "error", err)
		return err
	}
	r.digest = f.Digest
	r.log.Info("Identities reloaded", "file", r.file, "sha256", f.Digest[:12], "identities", len(f.Identities), "roles", len(f.Roles),
		"connections_closed", closed)
	return nil
}

// identitiesDebounce is how long the file's folder must stay quiet after a
// change before the file is read, so a half-written file is not loaded.
const identitiesDebounce = 100 * time.Millisecond

// watch reloads whenever the file changes, until ctx ends. It watches the
// folder, not the file, so an editor's write-and-rename and a Kubernetes
// ConfigMap's symlink swap both count.
func (r *identitiesReloader) watch(ctx context.Context) error {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return fmt.Errorf("watch identities: %w", err)
	}
	defer w.Close()
	dir := filepath.Dir(r.file)
	if err := w.Add(dir); err != nil {
		return fmt.Errorf("watch %s: %w", dir, err)
	}
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case _, ok := <-w.Events:
			if !ok {
				return nil
			}
			timer.Reset(identitiesDebounce) // any entry of the folder: a symlink swap renames others
		case err, ok := <-w.Errors:
			if !ok {
				return nil
			}
			r.log.Warn("Watching the identities file", "error", err)
		case <-timer.C:
			r.reload(true) //nolint:errcheck // logged; the previous identities stay
		}
	}
}
