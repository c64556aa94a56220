//go:build !unix

package smartctl

import "os/exec"

// configureKill keeps exec's default: kill the process itself on timeout.
func configureKill(cmd *exec.Cmd) {}
