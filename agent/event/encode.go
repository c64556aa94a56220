package event

import (
	"errors"
	"fmt"
	"reflect"
	"time"

	"github.com/fxamacker/cbor/v2"
)

// MaxEncodedSize bounds one encoded event (a 256 KiB file chunk and its
// envelope fit well within it).
const MaxEncodedSize = 1 << 20

// The wire and spool encoding is deterministic CBOR (RFC 8949 core
// deterministic encoding): the same event always gives the same bytes, so
// the backend can store and compare events byte for byte and a re-sent
// event is recognised as the same one. Times are RFC 3339 text in UTC.
var (
	encMode = func() cbor.EncMode {
		o := cbor.CoreDetEncOptions()
		o.Time = cbor.TimeRFC3339Nano
		o.TimeTag = cbor.EncTagNone
		m, err := o.EncMode()
		if err != nil {
			panic(err)
		}
		return m
	}()
	decMode = func() cbor.DecMode {
		m, err := cbor.DecOptions{
			DupMapKey:         cbor.DupMapKeyEnforcedAPF,
			IndefLength:       cbor.IndefLengthForbidden,
			TagsMd:            cbor.TagsForbidden,
			MaxNestedLevels:   16,
			MaxArrayElements:  10000,
			MaxMapPairs:       10000,
			DefaultMapType:    reflect.TypeOf(map[string]any(nil)),
			ExtraReturnErrors: cbor.ExtraDecErrorUnknownField,
			UTF8:              cbor.UTF8RejectInvalid,
		}.DecMode()
		if err != nil {
			panic(err)
		}
		return m
	}()
)

// New makes an event of type t with a fresh id and the current time. The
// system ID may be left empty for the spool to fill in.
func New(t Type, sev Severity, payload map[string]any) *Event {
	return &Event{ID: NewID(), Type: t, Severity: sev, Created: time.Now().UTC(), Payload: payload}
}

// Marshal validates e and returns its encoding.
func Marshal(e *Event) ([]byte, error) {
	if err := e.Validate(); err != nil {
		return nil, err
	}
	c := *e
	c.Created = c.Created.UTC()
	b, err := encMode.Marshal(&c)
	if err != nil {
		return nil, fmt.Errorf("event %s: encode: %w", e.ID, err)
	}
	if len(b) > MaxEncodedSize {
		return nil, fmt.Errorf("%w: event %s: %d bytes encoded, more than %d", ErrInvalid, e.ID, len(b), MaxEncodedSize)
	}
	return b, nil
}

// Unmarshal decodes and validates one event. It is the parser for bytes
// that come from disk or the network: limits on size, nesting and element
// counts are enforced, duplicate keys and trailing bytes are refused.
func Unmarshal(b []byte) (*Event, error) {
	if len(b) > MaxEncodedSize {
		return nil, fmt.Errorf("%w: %d bytes, more than %d", ErrInvalid, len(b), MaxEncodedSize)
	}
	var e Event
	rest, err := decMode.UnmarshalFirst(b, &e)
	if err != nil {
		return nil, fmt.Errorf("%w: decode: %v", ErrInvalid, err)
	}
	if len(rest) != 0 {
		return nil, fmt.Errorf("%w: %d bytes after the event", ErrInvalid, len(rest))
	}
	if err := e.Validate(); err != nil {
		return nil, err
	}
	return &e, nil
}

// IsUndeclared reports whether err says a field is not in the registry.
func IsUndeclared(err error) bool { return errors.Is(err, ErrUndeclaredField) }
