package scripting

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// ErrOutsideScripts is the error for a file of the scripts directory that is
// a symbolic link to somewhere outside it.
var ErrOutsideScripts = errors.New("scripting: a symbolic link that leads outside the scripts directory")

// confinedFS is a scripts directory on disk whose files resolve inside it
// only: a symbolic link is followed while it stays within the directory,
// and one that leads out (to a handler elsewhere, or to /etc/passwd named
// chat.lua) fails to open. Each Open opens the directory anew (os.Root),
// so a directory replaced by a rename (a deploy) is read as it is now.
type confinedFS struct{ dir string }

func (c confinedFS) Open(name string) (fs.File, error) {
	if !fs.ValidPath(name) {
		return nil, &fs.PathError{Op: "open", Path: name, Err: fs.ErrInvalid}
	}
	root, err := os.OpenRoot(c.dir)
	if err != nil {
		return nil, fmt.Errorf("scripts directory: %w", err)
	}
	defer root.Close() // the file opened keeps a descriptor of its own
	f, err := root.Open(name)
	if err != nil {
		if c.escapes(name) {
			return nil, &fs.PathError{Op: "open", Path: name, Err: ErrOutsideScripts}
		}
		return nil, err
	}
	return f, nil
}

// escapes reports whether name, within the directory, is a symbolic link
// whose target lies outside it (os.Root refuses those; this says why).
func (c confinedFS) escapes(name string) bool {
	full := filepath.Join(c.dir, filepath.FromSlash(name))
	info, err := os.Lstat(full)
	if err != nil || info.Mode()&fs.ModeSymlink == 0 {
		return false
	}
	dir, err := filepath.EvalSymlinks(c.dir)
	if err != nil {
		return false
	}
	target, err := filepath.EvalSymlinks(full)
	if err != nil {
		return true // dangling, or a loop: not a file of the directory either
	}
	rel, err := filepath.Rel(dir, target)
	return err != nil || rel == ".." || strings.HasPrefix(rel, ".."+string(filepath.Separator))
}
