//go:build unix

package smartctl

import (
	"os/exec"
	"syscall"
)

// configureKill runs smartctl in a process group of its own and, when the
// run times out, kills the whole group: a wrapper script's children must
// not outlive it.
func configureKill(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error {
		if cmd.Process == nil {
			return nil
		}
		return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	}
}
