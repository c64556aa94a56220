package audit

import (
	"fmt"
	"net"
	"syscall"
	"unsafe"
)

// unackedBytes returns how many bytes written to c the peer has not yet
// acknowledged (SIOCOUTQ, see tcp(7)).
func unackedBytes(c *net.TCPConn) (int, error) {
	rc, err := c.SyscallConn()
	if err != nil {
		return 0, err
	}
	var n int32
	var serr syscall.Errno
	err = rc.Control(func(fd uintptr) {
		_, _, serr = syscall.Syscall(syscall.SYS_IOCTL, fd, syscall.TIOCOUTQ, uintptr(unsafe.Pointer(&n)))
	})
	if err != nil {
		return 0, err
	}
	if serr != 0 {
		return 0, fmt.Errorf("SIOCOUTQ: %w", serr)
	}
	return int(n), nil
}
