package daemon

import (
	"errors"
	"fmt"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"github.com/dcagent/dcagent/agent/config"
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

// openStateDirToGroup lets the members of [policy] socket_group reach the
// control socket: they need to pass through the state directory (mode
// 0710, group socket_group: enter, not list), while every file in it stays
// readable by root only. Without socket_group the directory stays 0700.
func openStateDirToGroup(cfg *config.Config) error {
	group := cfg.Policy.SocketGroup
	if group == "" {
		return nil
	}
	g, err := user.LookupGroup(group)
	if err != nil {
		return &config.Error{File: cfg.Path, Section: "policy", Key: "socket_group", Err: err}
	}
	gid, err := strconv.Atoi(g.Gid)
	if err != nil {
		return &config.Error{File: cfg.Path, Section: "policy", Key: "socket_group", Err: fmt.Errorf("group %s has gid %q", group, g.Gid)}
	}
	dir := cfg.Device.StateDir
	if err := os.Chown(dir, -1, gid); err != nil {
		return fmt.Errorf("state directory %s: giving it to group %s: %w", dir, group, err)
	}
	return os.Chmod(dir, 0o710)
}
