package heartbeat

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"unicode/utf8"

	"github.com/fxamacker/cbor/v2"

	"github.com/dcagent/dcagent/agent/work"
)

// The wire format is shared with the backend (sim/heartbeat imports these
// types), so both ends encode and check messages with the same code.
//
// A heartbeat and its reply are each one CBOR map with small integer keys,
// sent as one DTLS record (one datagram) or as the body of one HTTPS
// request or response. Sizes matter: at a 60 s interval a device sends
// 1440 heartbeats a day, and the aim is 150 KB a day both ways including
// the DTLS record overhead, so a steady-state heartbeat is 13 bytes of CBOR
// and its reply 7.
//
// Versioning: key 0 carries the wire version. Version 1 leaves it out (an
// absent key 0 means version 1), so the steady state pays nothing for it;
// a later, incompatible version sets it, and a receiver refuses a version
// it does not know with ErrVersion. Compatible additions are new keys,
// which older receivers ignore.

// WireVersion is the version of the messages this package writes.
const WireVersion = 1

// NonceSize is the length of a heartbeat's nonce, and EchoSize that of the
// reply's echo. Four bytes each keep the steady-state exchange small;
// together with the sequence number and the system ID they make a reply
// match exactly one heartbeat (a false match needs a 1 in 2^32 guess).
const (
	NonceSize = 4
	EchoSize  = 4
)

// Limits on decoded messages; anything beyond them is refused.
const (
	MaxIDLen       = 64  // a work item id or acknowledged id
	MaxAcks        = 64  // ids acknowledged in one heartbeat
	MaxResults     = 32  // results in one heartbeat
	MaxDetailLen   = 512 // bytes of a result's detail
	MaxWorkItems   = 64  // work items in one reply
	MaxVersionLen  = 64  // agent version string
	MaxMessageSize = 1 << 20
)

// Heartbeat is what the device sends each interval.
type Heartbeat struct {
	// Version is the wire version; 0 (absent) means 1.
	Version uint `cbor:"0,keyasint,omitempty"`
	// Seq is the device's sequence number. It starts at the Unix time in
	// seconds when the agent starts and grows by one per heartbeat, so it
	// keeps growing across restarts without being stored anywhere (the
	// agent sends far fewer than one heartbeat a second on average).
	Seq uint64 `cbor:"1,keyasint"`
	// Nonce is fresh random bytes for each heartbeat; the reply's Echo is
	// derived from it.
	Nonce []byte `cbor:"2,keyasint"`
	// Telemetry is sent when it changed, on the first heartbeat of a
	// session or channel, and at least hourly; otherwise it is absent and
	// the backend keeps the last one it got.
	Telemetry *Telemetry `cbor:"3,keyasint,omitempty"`
	// Acks names work items the device has taken on: the backend stops
	// sending them. Sent again until a reply to a heartbeat carrying them
	// arrives.
	Acks []string `cbor:"4,keyasint,omitempty"`
	// Results reports finished work items; sent again until a reply lists
	// their ids in Done.
	Results []work.Result `cbor:"5,keyasint,omitempty"`
	// Wait asks an HTTPS backend to hold the request up to this many
	// seconds until there is work (long polling). Unused over DTLS.
	Wait uint32 `cbor:"6,keyasint,omitempty"`
}

// Telemetry is the device's state in a few numbers. Every field is
// declared in the reportable-items list; nothing else about the device
// travels in a heartbeat.
type Telemetry struct {
	DrivesOK    uint32 `cbor:"1,keyasint,omitempty" json:"drives_ok"`
	DrivesWatch uint32 `cbor:"2,keyasint,omitempty" json:"drives_watch"`
	DrivesWarn  uint32 `cbor:"3,keyasint,omitempty" json:"drives_warn"`
	DrivesFail  uint32 `cbor:"4,keyasint,omitempty" json:"drives_fail"`
	// SensorAlarms counts sensors outside their limits now.
	SensorAlarms uint32 `cbor:"5,keyasint,omitempty" json:"sensor_alarms"`
	// SpoolBacklog counts events waiting in the spool to be sent.
	SpoolBacklog uint32 `cbor:"6,keyasint,omitempty" json:"spool_backlog"`
	// CertNotAfter is when the device certificate expires, Unix seconds.
	CertNotAfter int64 `cbor:"7,keyasint,omitempty" json:"cert_not_after"`
	// AgentVersion is the dcagent version string.
	AgentVersion string `cbor:"8,keyasint,omitempty" json:"agent_version"`
}

// Reply is the backend's answer to one heartbeat.
type Reply struct {
	// Version is the wire version; 0 (absent) means 1.
	Version uint `cbor:"0,keyasint,omitempty"`
	// Echo binds the reply to one heartbeat of one device: see EchoFor.
	Echo []byte `cbor:"1,keyasint"`
	// Work lists items the device has not acknowledged yet.
	Work []work.Item `cbor:"2,keyasint,omitempty"`
	// Done lists the ids of results the backend has stored.
	Done []string `cbor:"3,keyasint,omitempty"`
	// More says that work is waiting that did not fit in this datagram;
	// the device fetches it over HTTPS.
	More bool `cbor:"4,keyasint,omitempty"`
}

// EchoFor is the value a reply carries for the heartbeat (seq, nonce) of
// the device systemID: the first EchoSize bytes of SHA-256 over a label,
// the system ID, the sequence number and the nonce. It echoes the nonce
// bound to the device, so a device accepts a reply only for a heartbeat it
// sent itself: a reply replayed from earlier, or meant for another device
// (a backend or proxy mix-up), does not match.
func EchoFor(systemID string, seq uint64, nonce []byte) []byte {
	h := sha256.New()
	h.Write([]byte("dcagent heartbeat echo v1\x00"))
	h.Write([]byte(systemID))
	var b [9]byte
	binary.BigEndian.PutUint64(b[1:], seq)
	h.Write(b[:])
	h.Write(nonce)
	var sum [sha256.Size]byte
	return h.Sum(sum[:0])[:EchoSize]
}

var (
	encMode cbor.EncMode
	decMode cbor.DecMode
)

func init() {
	var err error
	encMode, err = cbor.CoreDetEncOptions().EncMode()
	if err != nil {
		panic(err)
	}
	decMode, err = cbor.DecOptions{
		DupMapKey:        cbor.DupMapKeyEnforcedAPF,
		IndefLength:      cbor.IndefLengthForbidden,
		MaxNestedLevels:  8,
		MaxArrayElements: 256,
		MaxMapPairs:      64,
		UTF8:             cbor.UTF8RejectInvalid,
	}.DecMode()
	if err != nil {
		panic(err)
	}
}

// EncodeHeartbeat returns the CBOR encoding of h after checking it.
func EncodeHeartbeat(h *Heartbeat) ([]byte, error) {
	if err := h.Validate(); err != nil {
		return nil, err
	}
	return encMode.Marshal(h)
}

// DecodeHeartbeat reads and checks a heartbeat.
func DecodeHeartbeat(b []byte) (*Heartbeat, error) {
	if len(b) > MaxMessageSize {
		return nil, fmt.Errorf("%w: heartbeat of %d bytes is over %d", ErrMalformed, len(b), MaxMessageSize)
	}
	var h Heartbeat
	if err := decMode.Unmarshal(b, &h); err != nil {
		return nil, fmt.Errorf("%w: heartbeat: %v", ErrMalformed, err)
	}
	if err := h.Validate(); err != nil {
		return nil, err
	}
	return &h, nil
}

// EncodeReply returns the CBOR encoding of r after checking it.
func EncodeReply(r *Reply) ([]byte, error) {
	if err := r.Validate(); err != nil {
		return nil, err
	}
	return encMode.Marshal(r)
}

// DecodeReply reads and checks a reply.
func DecodeReply(b []byte) (*Reply, error) {
	if len(b) > MaxMessageSize {
		return nil, fmt.Errorf("%w: reply of %d bytes is over %d", ErrMalformed, len(b), MaxMessageSize)
	}
	var r Reply
	if err := decMode.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("%w: reply: %v", ErrMalformed, err)
	}
	if err := r.Validate(); err != nil {
		return nil, err
	}
	return &r, nil
}

func checkVersion(what string, v uint) error {
	if v != 0 && v != WireVersion {
		return fmt.Errorf("%w: %s has wire version %d, this side speaks %d", ErrVersion, what, v, WireVersion)
	}
	return nil
}

// Validate checks a heartbeat's fields against the protocol's limits.
func (h *Heartbeat) Validate() error {
	if err := checkVersion("heartbeat", h.Version); err != nil {
		return err
	}
	if h.Seq == 0 {
		return fmt.Errorf("%w: heartbeat: sequence number 0", ErrMalformed)
	}
	if len(h.Nonce) != NonceSize {
		return fmt.Errorf("%w: heartbeat: nonce of %d bytes, want %d", ErrMalformed, len(h.Nonce), NonceSize)
	}
	if len(h.Acks) > MaxAcks {
		return fmt.Errorf("%w: heartbeat: %d acks, at most %d", ErrMalformed, len(h.Acks), MaxAcks)
	}
	for _, id := range h.Acks {
		if err := checkID("heartbeat ack", id); err != nil {
			return err
		}
	}
	if len(h.Results) > MaxResults {
		return fmt.Errorf("%w: heartbeat: %d results, at most %d", ErrMalformed, len(h.Results), MaxResults)
	}
	for _, r := range h.Results {
		if err := checkID("heartbeat result", r.ID); err != nil {
			return err
		}
		if len(r.Detail) > MaxDetailLen {
			return fmt.Errorf("%w: heartbeat: result %q detail of %d bytes, at most %d", ErrMalformed, r.ID, len(r.Detail), MaxDetailLen)
		}
	}
	if t := h.Telemetry; t != nil && len(t.AgentVersion) > MaxVersionLen {
		return fmt.Errorf("%w: heartbeat: agent version of %d bytes, at most %d", ErrMalformed, len(t.AgentVersion), MaxVersionLen)
	}
	return nil
}

// Validate checks a reply's fields against the protocol's limits.
func (r *Reply) Validate() error {
	if err := checkVersion("reply", r.Version); err != nil {
		return err
	}
	if len(r.Echo) != EchoSize {
		return fmt.Errorf("%w: reply: echo of %d bytes, want %d", ErrMalformed, len(r.Echo), EchoSize)
	}
	if len(r.Work) > MaxWorkItems {
		return fmt.Errorf("%w: reply: %d work items, at most %d", ErrMalformed, len(r.Work), MaxWorkItems)
	}
	for _, it := range r.Work {
		if err := checkID("reply work item", it.ID); err != nil {
			return err
		}
		if it.Kind == "" || len(it.Kind) > MaxIDLen {
			return fmt.Errorf("%w: reply: work item %q has kind %q", ErrMalformed, it.ID, it.Kind)
		}
	}
	if len(r.Done) > MaxResults {
		return fmt.Errorf("%w: reply: %d done ids, at most %d", ErrMalformed, len(r.Done), MaxResults)
	}
	for _, id := range r.Done {
		if err := checkID("reply done", id); err != nil {
			return err
		}
	}
	return nil
}

func checkID(what, id string) error {
	if id == "" || len(id) > MaxIDLen {
		return fmt.Errorf("%w: %s id %q must be 1 to %d bytes", ErrMalformed, what, id, MaxIDLen)
	}
	if !utf8.ValidString(id) {
		return fmt.Errorf("%w: %s id is not UTF-8", ErrMalformed, what)
	}
	return nil
}
