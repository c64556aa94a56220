//go:build !unix

package smartctl

import "os"

// openNonBlocking opens path for reading; these systems have no FIFOs that
// block on open.
func openNonBlocking(path string) (*os.File, error) {
	return os.Open(path)
}
