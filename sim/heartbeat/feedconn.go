package heartbeat

import (
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/transport/v5/deadline"
)

// feedConn is the net.PacketConn a pion handshake runs on: datagrams from
// the shared socket are pushed into it by the service's readers, and what
// pion writes goes out through the shared socket to the one peer. Once
// the session has moved to the service's record layer the feed is
// detached: pion may still write (a close_notify when it is closed) but
// nothing leaves, so the session lives on.
type feedConn struct {
	local, remote net.Addr
	write         func(b []byte) error

	in        chan []byte
	detached  atomic.Bool
	done      chan struct{}
	closeOnce sync.Once
	readDL    *deadline.Deadline
}

func newFeedConn(local, remote net.Addr, write func([]byte) error) *feedConn {
	return &feedConn{
		local: local, remote: remote, write: write,
		in:     make(chan []byte, 16),
		done:   make(chan struct{}),
		readDL: deadline.New(),
	}
}

// push hands pion a copy of one datagram; when pion is behind, the
// datagram is dropped as the network would (pion retransmits).
func (f *feedConn) push(b []byte) {
	c := append([]byte(nil), b...)
	select {
	case f.in <- c:
	default:
	}
}

// detach stops everything pion writes from leaving.
func (f *feedConn) detach() { f.detached.Store(true) }

type timeoutError struct{}

func (timeoutError) Error() string   { return "i/o timeout" }
func (timeoutError) Timeout() bool   { return true }
func (timeoutError) Temporary() bool { return true }

func (f *feedConn) ReadFrom(b []byte) (int, net.Addr, error) {
	select {
	case d := <-f.in:
		return copy(b, d), f.remote, nil
	case <-f.readDL.Done():
		return 0, nil, timeoutError{}
	case <-f.done:
		return 0, nil, net.ErrClosed
	}
}

func (f *feedConn) WriteTo(b []byte, _ net.Addr) (int, error) {
	select {
	case <-f.done:
		return 0, net.ErrClosed
	default:
	}
	if f.detached.Load() {
		return len(b), nil
	}
	if err := f.write(b); err != nil {
		return 0, err
	}
	return len(b), nil
}

func (f *feedConn) Close() error {
	f.closeOnce.Do(func() { close(f.done) })
	return nil
}

func (f *feedConn) LocalAddr() net.Addr { return f.local }

func (f *feedConn) SetDeadline(t time.Time) error { return f.SetReadDeadline(t) }

func (f *feedConn) SetReadDeadline(t time.Time) error {
	f.readDL.Set(t)
	return nil
}

func (f *feedConn) SetWriteDeadline(time.Time) error { return nil }
