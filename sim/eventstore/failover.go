package eventstore

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"mime/quotedprintable"
	"net/mail"
	"strings"

	"github.com/dcagent/dcagent/agent/connecthome/sealed"
	"github.com/dcagent/dcagent/agent/connecthome/wire"
)

// maxMessage bounds one failover message.
const maxMessage = 64 << 20

// IngestMessage takes one failover message: a mail as the vendor's inbound
// mail server received it, or a file from the FTPS drop. Every sealed event
// in it is decrypted with the vendor key, its device signature and
// certificate checked, and stored like an upload from that device (the
// certificate's CommonName must be the event's system_id). An event already
// stored, by whichever channel, counts as a duplicate. err reports the
// blocks that could not be opened or were rejected; the others are stored.
func (s *Store) IngestMessage(msg []byte, channel string, o *sealed.Opener) (stored, duplicate int, err error) {
	blocks, err := ExtractSealed(msg)
	if err != nil {
		return 0, 0, err
	}
	var in []Incoming
	var errs []error
	for i, b := range blocks {
		op, err := o.Open(b)
		if err != nil {
			errs = append(errs, fmt.Errorf("block %d: %w", i, err))
			continue
		}
		in = append(in, Incoming{Data: op.Event, SystemID: op.Device.Subject.CommonName, Channel: channel})
	}
	if len(in) > 0 {
		results, err := s.Store(in)
		if err != nil {
			return 0, 0, err
		}
		for _, r := range results {
			switch r.Status {
			case wire.StatusStored:
				stored++
			case wire.StatusDuplicate:
				duplicate++
			default:
				errs = append(errs, fmt.Errorf("event %s rejected: %s", r.ID, r.Error))
			}
		}
	}
	if len(errs) > 0 {
		s.log.Warn("eventstore: failover message partly refused", "channel", channel, "stored", stored, "errors", len(errs))
	}
	return stored, duplicate, errors.Join(errs...)
}

// ExtractSealed finds the sealed events in a failover message. A mail's
// body is decoded from base64 or quoted-printable when a relay re-encoded
// it; a plain file is read as it is.
func ExtractSealed(msg []byte) ([][]byte, error) {
	if len(msg) > maxMessage {
		return nil, fmt.Errorf("eventstore: failover message of %d bytes, more than %d", len(msg), maxMessage)
	}
	body := msg
	if looksLikeMail(msg) {
		m, err := mail.ReadMessage(bytes.NewReader(msg))
		if err != nil {
			return nil, fmt.Errorf("eventstore: failover mail: %w", err)
		}
		var r io.Reader = m.Body
		switch strings.ToLower(strings.TrimSpace(m.Header.Get("Content-Transfer-Encoding"))) {
		case "base64":
			r = base64.NewDecoder(base64.StdEncoding, &stripNewlines{r: bufio.NewReader(m.Body)})
		case "quoted-printable":
			r = quotedprintable.NewReader(m.Body)
		}
		body, err = io.ReadAll(io.LimitReader(r, maxMessage))
		if err != nil {
			return nil, fmt.Errorf("eventstore: failover mail body: %w", err)
		}
	}
	return sealed.Unarmor(body)
}

// looksLikeMail reports whether b starts with a header line ("Name: ...").
func looksLikeMail(b []byte) bool {
	line, _, _ := bytes.Cut(b, []byte("\n"))
	name, _, ok := bytes.Cut(line, []byte(":"))
	if !ok || len(name) == 0 || bytes.HasPrefix(line, []byte("-----")) {
		return false
	}
	for _, c := range name {
		if !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}

// stripNewlines drops CR and LF so that base64 lines decode as one.
type stripNewlines struct{ r *bufio.Reader }

func (s *stripNewlines) Read(p []byte) (int, error) {
	n := 0
	for n < len(p) {
		c, err := s.r.ReadByte()
		if err != nil {
			if n > 0 {
				return n, nil
			}
			return 0, err
		}
		if c == '\r' || c == '\n' {
			continue
		}
		p[n] = c
		n++
	}
	return n, nil
}
