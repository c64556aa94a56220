package remote

import (
	"errors"
	"fmt"
	"io"
	"strings"
)

// The relay handshake. After the TLS handshake (the device authenticated by
// its certificate), the device names the session it was asked to open, and
// the relay answers before any session byte flows:
//
//	device → relay: "DCRELAY/1 SESSION <session id>\n"
//	relay → device: "DCRELAY/1 OK\n"  or  "DCRELAY/1 ERR <reason>\n"
//
// Both lines are read one byte at a time up to their newline, so that not a
// byte of the session that follows is consumed by the handshake. A session
// id is 8 to 64 characters of A-Z a-z 0-9 _ -.
const (
	relayProto     = "DCRELAY/1"
	maxHelloBytes  = 128
	maxReplyBytes  = 256
	minSessionID   = 8
	maxSessionID   = 64
	helloPrefix    = relayProto + " SESSION "
	replyOK        = relayProto + " OK"
	replyErrPrefix = relayProto + " ERR "
)

// ErrHandshake marks a malformed handshake line.
var ErrHandshake = errors.New("relay handshake")

// ValidSessionID reports whether id may name a session.
func ValidSessionID(id string) bool {
	if len(id) < minSessionID || len(id) > maxSessionID {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// WriteHello sends the device's side of the handshake.
func WriteHello(w io.Writer, sessionID string) error {
	if !ValidSessionID(sessionID) {
		return fmt.Errorf("%w: session id %q is not 8-64 of A-Z a-z 0-9 _ -", ErrHandshake, sessionID)
	}
	_, err := io.WriteString(w, helloPrefix+sessionID+"\n")
	return err
}

// ReadHello reads the device's hello (the relay's side) and returns the
// session id.
func ReadHello(r io.Reader) (string, error) {
	line, err := readLine(r, maxHelloBytes)
	if err != nil {
		return "", err
	}
	id, ok := strings.CutPrefix(line, helloPrefix)
	if !ok {
		return "", fmt.Errorf("%w: expected %q, got %q", ErrHandshake, helloPrefix+"ID", clipText(line))
	}
	if !ValidSessionID(id) {
		return "", fmt.Errorf("%w: session id %q is not 8-64 of A-Z a-z 0-9 _ -", ErrHandshake, clipText(id))
	}
	return id, nil
}

// WriteReply sends the relay's answer: OK for a nil refusal.
func WriteReply(w io.Writer, refusal error) error {
	line := replyOK + "\n"
	if refusal != nil {
		reason := strings.Map(func(r rune) rune {
			if r < 0x20 || r == 0x7f {
				return ' '
			}
			return r
		}, refusal.Error())
		if max := maxReplyBytes - len(replyErrPrefix) - 1; len(reason) > max {
			reason = reason[:max]
		}
		line = replyErrPrefix + reason + "\n"
	}
	_, err := io.WriteString(w, line)
	return err
}

// RefusedError is the relay's refusal of a session.
type RefusedError struct{ Reason string }

func (e *RefusedError) Error() string { return "the relay refused the session: " + e.Reason }

// ReadReply reads the relay's answer (the device's side): nil for OK, a
// *RefusedError for a refusal.
func ReadReply(r io.Reader) error {
	line, err := readLine(r, maxReplyBytes)
	if err != nil {
		return err
	}
	if line == replyOK {
		return nil
	}
	if reason, ok := strings.CutPrefix(line, replyErrPrefix); ok && reason != "" {
		return &RefusedError{Reason: reason}
	}
	return fmt.Errorf("%w: unexpected answer %q", ErrHandshake, clipText(line))
}

// readLine reads up to max bytes, one at a time, until a newline.
func readLine(r io.Reader, max int) (string, error) {
	buf := make([]byte, 0, 64)
	var b [1]byte
	for {
		n, err := r.Read(b[:])
		if n == 1 {
			if b[0] == '\n' {
				return string(buf), nil
			}
			if len(buf) >= max {
				return "", fmt.Errorf("%w: line longer than %d bytes", ErrHandshake, max)
			}
			buf = append(buf, b[0])
			continue
		}
		if err == io.EOF {
			return "", fmt.Errorf("%w: connection closed after %d bytes", ErrHandshake, len(buf))
		}
		if err != nil {
			return "", err
		}
	}
}

func clipText(s string) string {
	if len(s) > 40 {
		s = s[:40] + "…"
	}
	return s
}
