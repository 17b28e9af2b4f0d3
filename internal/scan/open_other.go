//go:build !unix

package scan

import "os"

func openFile(path string) (readCloser, error) { return os.Open(path) }
