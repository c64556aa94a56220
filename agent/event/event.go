// Package event defines what the agent sends home: an event with a unique,
// time-ordered id, a type, a severity, the device's system ID and a
// payload. Every payload field must be declared in the reportable-items
// registry (registry.go), which `dcagent reportable-items` prints; an event
// carrying an undeclared field is refused before it is spooled, so nothing
// about the customer leaves the device by accident.
package event

import "time"

// Type is what kind of event this is.
type Type string

const (
	TypeAlert         Type = "alert"
	TypeHealthReport  Type = "health_report"
	TypeConfiguration Type = "configuration"
	TypeLicensing     Type = "licensing_usage"
	TypeCommandResult Type = "command_result"
	TypeFileChunk     Type = "file_chunk"
)

// Severity orders events in the spool: higher first.
type Severity int

const (
	SeverityInfo     Severity = 1
	SeverityNotice   Severity = 2
	SeverityWarning  Severity = 3
	SeverityError    Severity = 4
	SeverityCritical Severity = 5
)

// Event is one unit sent home.
type Event struct {
	ID       string         `json:"id" cbor:"1,keyasint"`
	Type     Type           `json:"type" cbor:"2,keyasint"`
	Severity Severity       `json:"severity" cbor:"3,keyasint"`
	Created  time.Time      `json:"created" cbor:"4,keyasint"`
	SystemID string         `json:"system_id" cbor:"5,keyasint"`
	Payload  map[string]any `json:"payload,omitempty" cbor:"6,keyasint,omitempty"`
}

// Sink takes events to send home (the spool). Producers depend on this,
// not on the spool.
type Sink interface {
	Put(e *Event) error
}
