package hwmon

import (
	"os"
	"path/filepath"
	"syscall"
)

// FS is the file access the reader needs. OS is the real filesystem; tests
// substitute an FS that returns errno values a real filesystem cannot be
// made to produce on demand (ENODATA from a chip driver, say).
type FS interface {
	// ReadDirNames lists a directory's entries, unsorted.
	ReadDirNames(dir string) ([]string, error)
	// ReadFile reads at most len(buf) bytes of a file with a single read,
	// as sysfs attributes are read. n == len(buf) means the file may be
	// longer than buf.
	ReadFile(name string, buf []byte) (n int, err error)
	// EvalSymlinks resolves every symbolic link in a path.
	EvalSymlinks(name string) (string, error)
	// IsSymlink reports whether name itself is a symbolic link.
	IsSymlink(name string) bool
}

// OS is the real filesystem.
var OS FS = osFS{}

type osFS struct{}

// ReadDirNames opens with O_DIRECTORY so that a FIFO where a directory
// belongs fails at once (ENOTDIR) instead of blocking the open.
func (osFS) ReadDirNames(dir string) ([]string, error) {
	f, err := os.OpenFile(dir, os.O_RDONLY|syscall.O_DIRECTORY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return f.Readdirnames(-1)
}

// ReadFile opens without blocking and reads with plain system calls, so
// that a FIFO or a terminal placed in a tree by mistake cannot hang the
// reader (os.File would park a FIFO read in the poller): a FIFO with no
// writer reads as empty, one with a silent writer fails with EAGAIN.
func (osFS) ReadFile(name string, buf []byte) (int, error) {
	var fd int
	var err error
	for {
		fd, err = syscall.Open(name, syscall.O_RDONLY|syscall.O_NONBLOCK|syscall.O_NOCTTY|syscall.O_CLOEXEC, 0)
		if err != syscall.EINTR {
			break
		}
	}
	if err != nil {
		return 0, &os.PathError{Op: "open", Path: name, Err: err}
	}
	defer syscall.Close(fd)
	for {
		n, err := syscall.Read(fd, buf)
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			return 0, &os.PathError{Op: "read", Path: name, Err: err}
		}
		return n, nil
	}
}

func (osFS) EvalSymlinks(name string) (string, error) { return filepath.EvalSymlinks(name) }

func (osFS) IsSymlink(name string) bool {
	fi, err := os.Lstat(name)
	return err == nil && fi.Mode()&os.ModeSymlink != 0
}
