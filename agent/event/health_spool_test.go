package event

import (
	"errors"
	"testing"
	"time"
)

// healthReportWithSpool is a health report carrying what the daemon adds
// to every one (agent/daemon healthExtra): its version, uptime and the
// spool's figures, each an integer.
func healthReportWithSpool(spool map[string]any) *Event {
	return &Event{
		ID: NewID(), Type: TypeHealthReport, Severity: SeverityInfo,
		Created: time.Date(2026, 3, 1, 17, 40, 3, 0, time.UTC), SystemID: "SYS-0001",
		Payload: map[string]any{
			"agent_version":  "1.4.0",
			"uptime_seconds": int64(86400),
			"spool":          spool,
			"sensors":        []map[string]any{},
			"drives":         []map[string]any{},
			"slots":          []map[string]any{},
		},
	}
}

// TestHealthReportSpoolFigures: the spool object the daemon puts in health
// reports is declared, field by field, and round-trips; a figure the
// registry does not declare, or one of the wrong kind, is refused by name.
func TestHealthReportSpoolFigures(t *testing.T) {
	spool := map[string]any{
		"backlog": int64(12), "backlog_bytes": int64(48213), "dropped": int64(3),
		"quarantined": int64(1), "refused": int64(2),
	}
	e := healthReportWithSpool(spool)
	b, err := Marshal(e)
	if err != nil {
		t.Fatalf("the daemon's health report is refused: %v", err)
	}
	got, err := Unmarshal(b)
	if err != nil {
		t.Fatal(err)
	}
	gs, ok := got.Payload["spool"].(map[string]any)
	if !ok || len(gs) != len(spool) {
		t.Fatalf("spool after a round trip: %#v", got.Payload["spool"])
	}
	for k, want := range spool {
		if v, ok := gs[k].(uint64); !ok || int64(v) != want.(int64) {
			t.Errorf("spool.%s = %#v after a round trip, want %d", k, gs[k], want)
		}
	}
	// Plain Go ints, as the spool's Stats hold them, are accepted too.
	if _, err := Marshal(healthReportWithSpool(map[string]any{"backlog": 0, "backlog_bytes": int64(0), "dropped": int64(0), "quarantined": int64(0), "refused": int64(0)})); err != nil {
		t.Errorf("zero figures refused: %v", err)
	}

	for name, tc := range map[string]struct {
		field string
		value any
		want  error
	}{
		"undeclared figure":        {"leased", int64(1), ErrUndeclaredField},
		"dropped by severity":      {"dropped", map[string]any{"1": int64(3)}, ErrInvalid},
		"last error text":          {"last_error", "no space left on device", ErrUndeclaredField},
		"bytes as a float":         {"backlog_bytes", 1.5, ErrInvalid},
		"refused as text":          {"refused", "2", ErrInvalid},
		"quarantined without data": {"quarantined", nil, ErrInvalid},
	} {
		t.Run(name, func(t *testing.T) {
			s := map[string]any{"backlog": int64(1)}
			s[tc.field] = tc.value
			_, err := Marshal(healthReportWithSpool(s))
			var fe *FieldError
			if !errors.As(err, &fe) || fe.Field != "spool."+tc.field {
				t.Fatalf("got %v, want an error naming spool.%s", err, tc.field)
			}
			// A declared figure of the wrong kind is a bad value, not an
			// undeclared field.
			if undeclared := errors.Is(err, ErrUndeclaredField); undeclared != (tc.want == ErrUndeclaredField) {
				t.Errorf("got %v, want %v", err, tc.want)
			}
		})
	}
}
