package tpm

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync/atomic"
	"time"
)

// commandTimeout bounds one command on a TCP TPM. It is long because a
// real TPM may take tens of seconds to make an RSA key.
const commandTimeout = 2 * time.Minute

// maxResponse bounds the size a response header may claim; TPM responses
// are a few KiB (TPM_PT_MAX_RESPONSE_SIZE is 4096 on most chips).
const maxResponse = 64 << 10

// Response codes that mean "the command did not run; send it again".
const (
	rcYielded = 0x908 // TPM_RC_YIELDED: the TPM suspended the command
	rcTesting = 0x90A // TPM_RC_TESTING: self-test of what the command needs is running
	rcRetry   = 0x922 // TPM_RC_RETRY: the TPM was busy (swtpm answers the first ECDSA sign after start with it)
)

// retryAttempts and retryMaxDelay bound the resends of one command: with
// delays doubling from 1 ms to 250 ms that is about 9 s, long enough for a
// self-test and short enough that a wedged TPM is reported.
const (
	retryAttempts = 40
	retryMaxDelay = 250 * time.Millisecond
)

// rawConn carries TPM command and response bytes.
type rawConn interface {
	Send(cmd []byte) ([]byte, error)
	Close() error
}

// transportError is a failure of the connection, not an answer of the
// TPM; the connection is dropped and made again.
type transportError struct{ err error }

func (e *transportError) Error() string { return "tpm: connection: " + e.err.Error() }
func (e *transportError) Unwrap() error { return e.err }

func isTransportError(err error) bool {
	var te *transportError
	return errors.As(err, &te)
}

// streamConn speaks the raw TPM 2.0 command stream over TCP (swtpm
// --server type=tcp): a command goes out as it is, a response comes back
// as a 10-byte header that gives its size, then the rest. Reading by the
// size, not by one Read, keeps a response that arrives in pieces whole.
type streamConn struct {
	c       net.Conn
	timeout time.Duration // per command; commandTimeout once the TPM answered
}

// probeTimeout bounds the first commands on a new TCP connection. swtpm
// accepts a second client's connection and then answers nothing until
// the first one leaves, so a TPM that says nothing for this long is
// taken as busy rather than slow.
var probeTimeout = 10 * time.Second

func dialTCP(addr string) (*streamConn, error) {
	c, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		return nil, err
	}
	return &streamConn{c: c, timeout: probeTimeout}, nil
}

func (s *streamConn) Send(cmd []byte) ([]byte, error) {
	_ = s.c.SetDeadline(time.Now().Add(s.timeout))
	if _, err := s.c.Write(cmd); err != nil {
		return nil, &transportError{err}
	}
	return readResponse(s.c)
}

func (s *streamConn) Close() error { return s.c.Close() }

func readResponse(r io.Reader) ([]byte, error) {
	hdr := make([]byte, 10)
	if _, err := io.ReadFull(r, hdr); err != nil {
		return nil, &transportError{fmt.Errorf("reading response header: %w", err)}
	}
	size := binary.BigEndian.Uint32(hdr[2:6])
	if size < 10 || size > maxResponse {
		return nil, &transportError{fmt.Errorf("response header claims %d bytes", size)}
	}
	rsp := make([]byte, size)
	copy(rsp, hdr)
	if _, err := io.ReadFull(r, rsp[10:]); err != nil {
		return nil, &transportError{fmt.Errorf("reading response body: %w", err)}
	}
	return rsp, nil
}

// deviceConn is a Linux TPM character device: one write per command, one
// read returns the whole response.
type deviceConn struct {
	f *os.File
}

func openDevice(path string) (*deviceConn, error) {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return nil, err
	}
	return &deviceConn{f: f}, nil
}

func (d *deviceConn) Send(cmd []byte) ([]byte, error) {
	if _, err := d.f.Write(cmd); err != nil {
		return nil, &transportError{err}
	}
	buf := make([]byte, maxResponse)
	n, err := d.f.Read(buf)
	if err != nil {
		return nil, &transportError{err}
	}
	if n < 10 {
		return nil, &transportError{fmt.Errorf("short response (%d bytes)", n)}
	}
	if size := binary.BigEndian.Uint32(buf[2:6]); int(size) != n {
		return nil, &transportError{fmt.Errorf("response header claims %d bytes, read %d", size, n)}
	}
	return buf[:n], nil
}

func (d *deviceConn) Close() error { return d.f.Close() }

// retrier resends a command while the TPM answers that it did not run
// it: RETRY, YIELDED or TESTING. go-tpm's transports do not, and swtpm's
// first ECDSA signature after every start answers RETRY.
type retrier struct {
	conn    rawConn
	retries *atomic.Uint64
	sleep   func(time.Duration)
}

func (r *retrier) Send(cmd []byte) ([]byte, error) {
	delay := time.Millisecond
	for attempt := 1; ; attempt++ {
		rsp, err := r.conn.Send(cmd)
		if err != nil {
			return nil, err
		}
		if len(rsp) < 10 {
			return nil, &transportError{fmt.Errorf("short response (%d bytes)", len(rsp))}
		}
		rc := binary.BigEndian.Uint32(rsp[6:10])
		if (rc != rcRetry && rc != rcYielded && rc != rcTesting) || attempt >= retryAttempts {
			return rsp, nil
		}
		r.retries.Add(1)
		r.sleep(delay)
		delay = min(2*delay, retryMaxDelay)
	}
}
