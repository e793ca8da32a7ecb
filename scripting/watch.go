package scripting

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"time"

	"github.com/fsnotify/fsnotify"
)

// DefaultDebounce is how long the scripts directory must stay quiet after a
// change before it is reloaded, so a half-written file is never loaded.
const DefaultDebounce = 100 * time.Millisecond

// ErrNotWatchable is returned by Watch for scripts that are not a directory
// on disk (the embedded defaults).
var ErrNotWatchable = errors.New("scripting: the scripts are not a directory on disk")

// Watch reloads the scripts whenever the directory or its lib/ changes,
// until ctx ends. It watches the directories, not the files, so editors that
// save by writing a new file and renaming it over the old one, creating,
// deleting or changing modes all count. A burst of events causes one reload
// once the directory has been quiet for debounce (zero: DefaultDebounce).
func (e *Engine) Watch(ctx context.Context, debounce time.Duration) error {
	if e.dir == "" {
		return ErrNotWatchable
	}
	if debounce <= 0 {
		debounce = DefaultDebounce
	}
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return fmt.Errorf("watch scripts: %w", err)
	}
	defer w.Close()
	dir := filepath.Clean(e.dir)
	lib := filepath.Join(dir, "lib")
	if err := w.Add(dir); err != nil {
		return fmt.Errorf("watch %s: %w", dir, err)
	}
	w.Add(lib) //nolint:errcheck // lib/ is optional; it is added when created
	e.log.Info("Watching scripts for changes", "dir", dir)

	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-w.Events:
			if !ok {
				return nil
			}
			if scriptsChanged(w, lib, ev) {
				timer.Reset(debounce) // trailing edge: wait for quiet
			}
		case err, ok := <-w.Errors:
			if !ok {
				return nil
			}
			e.log.Warn("Watching scripts", "error", err)
		case <-timer.C:
			// An event already waiting when the timer fired came within
			// the quiet period (select picks among ready cases at random):
			// it restarts the wait rather than reloading now and again later.
			if changePending(w, lib) {
				timer.Reset(debounce)
				continue
			}
			e.Reload() //nolint:errcheck // a failed reload is logged and keeps the old scripts
		}
	}
}

// scriptsChanged reports whether ev changes the scripts (a .lua file or
// lib/), and starts watching lib/ when it is created.
func scriptsChanged(w *fsnotify.Watcher, lib string, ev fsnotify.Event) bool {
	if ev.Name == lib && ev.Has(fsnotify.Create) {
		w.Add(lib) //nolint:errcheck // it may be gone again already
	}
	return ev.Name == lib || strings.HasSuffix(ev.Name, ".lua")
}

// changePending takes the events already waiting, without blocking, and
// reports whether any of them changes the scripts.
func changePending(w *fsnotify.Watcher, lib string) bool {
	changed := false
	for {
		select {
		case ev, ok := <-w.Events:
			if !ok {
				return changed
			}
			changed = scriptsChanged(w, lib, ev) || changed
		default:
			return changed
		}
	}
}
