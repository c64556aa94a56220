package heartbeat

import (
	"encoding/binary"
	"log/slog"
	"net"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// socketOptions asks the kernel to stamp each datagram with its arrival
// time (SO_TIMESTAMPNS), which lets a reader tell how long a datagram
// waited in the queue and shed the stale ones, and to report the socket's
// drop counter (SO_RXQ_OVFL). As root it also lifts the receive buffer
// above net.core.rmem_max, so that a burst is absorbed rather than lost.
func socketOptions(c *net.UDPConn, readBuffer int, log *slog.Logger) {
	raw, err := c.SyscallConn()
	if err != nil {
		return
	}
	_ = raw.Control(func(fd uintptr) {
		if err := unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_TIMESTAMPNS, 1); err != nil {
			log.Debug("SO_TIMESTAMPNS", "err", err)
		}
		if err := unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RXQ_OVFL, 1); err != nil {
			log.Debug("SO_RXQ_OVFL", "err", err)
		}
		// The kernel reports twice what was asked for (bookkeeping).
		if cur, err := unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF); err == nil && cur < 2*readBuffer {
			_ = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, readBuffer)
		}
	})
}

// parseControl reads the arrival time and the socket's drop counter from
// a datagram's control messages, without allocating.
func parseControl(oob []byte) (arrived time.Time, drops uint32, ok bool) {
	hdrLen := unix.CmsgLen(0)
	for len(oob) >= hdrLen {
		h := (*unix.Cmsghdr)(unsafe.Pointer(&oob[0]))
		l := int(h.Len)
		if l < hdrLen || l > len(oob) {
			return arrived, drops, ok
		}
		data := oob[hdrLen:l]
		if h.Level == unix.SOL_SOCKET {
			switch h.Type {
			case unix.SO_TIMESTAMPNS:
				if len(data) >= int(unsafe.Sizeof(unix.Timespec{})) {
					ts := (*unix.Timespec)(unsafe.Pointer(&data[0]))
					arrived, ok = time.Unix(int64(ts.Sec), int64(ts.Nsec)), true //nolint:unconvert // 32-bit
				}
			case unix.SO_RXQ_OVFL:
				if len(data) >= 4 {
					drops, ok = binary.NativeEndian.Uint32(data), true
				}
			}
		}
		next := unix.CmsgSpace(l - hdrLen)
		if next > len(oob) {
			break
		}
		oob = oob[next:]
	}
	return arrived, drops, ok
}
