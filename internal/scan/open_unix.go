//go:build unix

package scan

import (
	"io"
	"io/fs"
	"syscall"
)

// openFile opens path for reading with the system calls alone: os.Open also registers each file with
// the runtime's poller (an epoll_ctl that regular files refuse, and fcntl calls around it), which costs
// more than reading a small file.
func openFile(path string) (readCloser, error) {
	for {
		fd, err := syscall.Open(path, syscall.O_RDONLY|syscall.O_CLOEXEC, 0)
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			return nil, &fs.PathError{Op: "open", Path: path, Err: err}
		}
		return rawFile(fd), nil
	}
}

type rawFile int

func (f rawFile) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	for {
		n, err := syscall.Read(int(f), p)
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			return 0, err
		}
		if n == 0 {
			return 0, io.EOF
		}
		return n, nil
	}
}

func (f rawFile) Close() error { return syscall.Close(int(f)) }

// fileID identifies a directory by its device and inode.
type fileID struct{ dev, ino uint64 }

// dirID returns the device and inode of path (symbolic links followed).
func dirID(path string) (fileID, bool) {
	var st syscall.Stat_t
	for {
		err := syscall.Stat(path, &st)
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			return fileID{}, false
		}
		return fileID{dev: uint64(st.Dev), ino: uint64(st.Ino)}, true //nolint:unconvert // int32 on some systems
	}
}
