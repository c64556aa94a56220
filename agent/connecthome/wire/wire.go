// Package wire is the connect-home protocol shared by the agent's uploader
// and the backend's event store:
//
//	PUT  /v1/events/{id}   one event
//	POST /v1/events/batch  several events, each acknowledged on its own
//
// Both go over mutual TLS. The body of a PUT is the event's encoding
// (deterministic CBOR, agent/event); the body of a batch is a CBOR array of
// byte strings, each one event's encoding, so that the backend stores
// every event byte for byte as the device made it. Bodies are compressed
// (Content-Encoding: gzip; the backend also takes zstd) and carry an
// RFC 9530 Content-Digest (sha-256) of the body as sent.
//
// Answers are JSON. A PUT answers 201 (stored) or 200 (already stored:
// the call is idempotent by id). A batch answers 200 with one Result per
// event: stored, duplicate, or rejected with a reason (a rejected event
// will never be accepted; the agent quarantines it). 503 and 429 carry
// Retry-After. Other 4xx mean the request itself is wrong.
package wire

import (
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"

	"github.com/fxamacker/cbor/v2"
)

const (
	// PathPrefix is where the event API lives.
	PathPrefix = "/v1/events/"
	// BatchPath is the batch endpoint.
	BatchPath = PathPrefix + "batch"
	// ContentTypeEvent is one event's encoding.
	ContentTypeEvent = "application/cbor"
	// ContentTypeBatch is a CBOR array of byte strings.
	ContentTypeBatch = "application/vnd.dcagent.event-batch+cbor"
	// MaxBatchEvents bounds one batch.
	MaxBatchEvents = 10000
	// MaxBodyBytes bounds a decompressed request body.
	MaxBodyBytes = 64 << 20
)

// Status of one event at the backend.
const (
	StatusStored    = "stored"
	StatusDuplicate = "duplicate"
	StatusRejected  = "rejected"
)

// Result is the backend's answer for one event.
type Result struct {
	ID     string `json:"id"`
	Status string `json:"status"`
	Error  string `json:"error,omitempty"`
}

// BatchResponse is the answer to a batch.
type BatchResponse struct {
	Results []Result `json:"results"`
}

// ErrorResponse is the body of an error answer.
type ErrorResponse struct {
	Error string `json:"error"`
}

// Acked reports whether the backend holds the event.
func (r Result) Acked() bool { return r.Status == StatusStored || r.Status == StatusDuplicate }

var (
	encMode = func() cbor.EncMode { m, _ := cbor.CoreDetEncOptions().EncMode(); return m }()
	decMode = func() cbor.DecMode {
		m, err := cbor.DecOptions{
			MaxArrayElements: MaxBatchEvents,
			IndefLength:      cbor.IndefLengthForbidden,
			TagsMd:           cbor.TagsForbidden,
			MaxNestedLevels:  4,
		}.DecMode()
		if err != nil {
			panic(err)
		}
		return m
	}()
)

// EncodeBatch builds a batch body (before compression).
func EncodeBatch(events [][]byte) ([]byte, error) {
	if len(events) == 0 || len(events) > MaxBatchEvents {
		return nil, fmt.Errorf("wire: batch of %d events (1..%d)", len(events), MaxBatchEvents)
	}
	return encMode.Marshal(events)
}

// DecodeBatch parses a batch body (after decompression).
func DecodeBatch(b []byte) ([][]byte, error) {
	var events [][]byte
	rest, err := decMode.UnmarshalFirst(b, &events)
	if err != nil {
		return nil, fmt.Errorf("wire: batch: %w", err)
	}
	if len(rest) != 0 {
		return nil, fmt.Errorf("wire: batch: %d bytes after the array", len(rest))
	}
	if len(events) == 0 {
		return nil, errors.New("wire: empty batch")
	}
	return events, nil
}

// ContentDigest returns the RFC 9530 Content-Digest field value for body.
func ContentDigest(body []byte) string {
	sum := sha256.Sum256(body)
	return "sha-256=:" + base64.StdEncoding.EncodeToString(sum[:]) + ":"
}

// CheckContentDigest verifies a Content-Digest field against body. The
// field is a structured dictionary; the sha-256 member must be present
// and match (other algorithms are ignored, as RFC 9530 allows).
func CheckContentDigest(field string, body []byte) error {
	if field == "" {
		return errors.New("no Content-Digest header")
	}
	want := sha256.Sum256(body)
	for _, member := range strings.Split(field, ",") {
		name, value, ok := strings.Cut(strings.TrimSpace(member), "=")
		if !ok || strings.ToLower(strings.TrimSpace(name)) != "sha-256" {
			continue
		}
		value = strings.TrimSpace(value)
		if len(value) < 2 || value[0] != ':' || value[len(value)-1] != ':' {
			return fmt.Errorf("Content-Digest sha-256 value %q is not a byte sequence", value)
		}
		got, err := base64.StdEncoding.DecodeString(value[1 : len(value)-1])
		if err != nil {
			return fmt.Errorf("Content-Digest sha-256: %v", err)
		}
		if string(got) != string(want[:]) {
			return errors.New("Content-Digest sha-256 does not match the body")
		}
		return nil
	}
	return errors.New("Content-Digest has no sha-256 member")
}
