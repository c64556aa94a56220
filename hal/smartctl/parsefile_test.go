//go:build unix

package smartctl

import (
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/dcagent/dcagent/internal/testenv"
)

// ParseFile reads only regular files: a FIFO with no writer, a directory,
// a socket or a device is refused at once, by name, instead of blocking or
// reading forever.
func TestParseFileRefusesNonRegular(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	linkToFifo := filepath.Join(dir, "link")
	if err := os.Symlink(fifo, linkToFifo); err != nil {
		t.Fatal(err)
	}
	for path, want := range map[string]string{
		fifo:         "a named pipe (FIFO), not a regular file",
		linkToFifo:   "a named pipe (FIFO), not a regular file",
		dir:          "a directory, not a regular file",
		sock:         "a socket, not a regular file",
		"/dev/zero":  "a character device, not a regular file",
		"/dev/null":  "a character device, not a regular file",
		dir + "/nil": "no such file",
	} {
		done := make(chan error, 1)
		go func() { _, err := ParseFile(path); done <- err }()
		select {
		case err := <-done:
			var pe *ParseError
			if !errors.As(err, &pe) || pe.Source != path || !strings.Contains(err.Error(), want) || !strings.HasPrefix(err.Error(), path+": ") {
				t.Errorf("%s: got %v, want an error naming it and saying %q", path, err, want)
			}
		case <-time.After(20 * time.Second):
			// Unblock the open so the goroutine ends, then fail.
			if f, err := os.OpenFile(fifo, os.O_WRONLY|syscall.O_NONBLOCK, 0); err == nil {
				f.Close()
			}
			t.Fatalf("%s: ParseFile blocked", path)
		}
	}

	// A symbolic link to a regular capture is read.
	capture := filepath.Join(testenv.SharedTestdata(t), "smart", "json/libblockdev/HGST_HUS726060ALA640.json")
	link := filepath.Join(dir, "capture.json")
	if err := os.Symlink(capture, link); err != nil {
		t.Fatal(err)
	}
	if s, err := ParseFile(link); err != nil || s.Model != "HGST HUS726060ALA640" || s.Source != link {
		t.Errorf("symlink to a capture: %+v, %v", s, err)
	}
}

// A file larger than any smartctl report is refused by its size, without
// reading it all.
func TestParseFileTooLarge(t *testing.T) {
	p := filepath.Join(t.TempDir(), "huge.json")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	// Sparse: 1 GB on paper, nothing on disk.
	if err := f.Truncate(1 << 30); err != nil {
		t.Fatal(err)
	}
	f.Close()
	_, err = ParseFile(p)
	if !errors.Is(err, ErrNotSmartctl) || !strings.Contains(err.Error(), "1073741824 bytes is more than any smartctl report") || !strings.Contains(err.Error(), p) {
		t.Errorf("got %v", err)
	}
}
