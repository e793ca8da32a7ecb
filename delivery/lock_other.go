//go:build !unix

package delivery

import (
	"fmt"
	"os"
	"path/filepath"
)

// lockDir opens dir's lock file; without flock nothing stops a second
// process.
func lockDir(dir string) (*os.File, error) {
	f, err := os.OpenFile(filepath.Join(dir, "samgw.lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("delivery: lock the data directory: %w", err)
	}
	return f, nil
}
