package daemon

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// LockName is the file in the state directory whose lock a running daemon
// holds. The kernel releases the lock when the process ends, however it
// ends, so a killed daemon never leaves a stale one.
const LockName = "dcagent.lock"

// lockStateDir takes the state directory's lock, or says which process
// holds it.
func lockStateDir(dir string) (*os.File, error) {
	p := filepath.Join(dir, LockName)
	f, err := os.OpenFile(p, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("state directory lock %s: %w", p, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		holder := make([]byte, 32)
		n, _ := f.ReadAt(holder, 0)
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			pid := strings.TrimSpace(string(holder[:n]))
			return nil, fmt.Errorf("another dcagent daemon (pid %s) is running with the state directory %s; stop it first (two daemons would fork the audit log)", pid, dir)
		}
		return nil, fmt.Errorf("state directory lock %s: %w", p, err)
	}
	f.Truncate(0)
	f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	return f, nil
}
