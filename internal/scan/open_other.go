//go:build !unix

package scan

import (
	"os"
	"path/filepath"
)

func openFile(path string) (readCloser, error) { return os.Open(path) }

// fileID identifies a directory by its absolute path, symbolic links resolved (no inode here).
type fileID struct{ path string }

func dirID(path string) (fileID, bool) {
	p, err := filepath.EvalSymlinks(path)
	if err != nil {
		return fileID{}, false
	}
	if p, err = filepath.Abs(p); err != nil {
		return fileID{}, false
	}
	return fileID{path: p}, true
}
