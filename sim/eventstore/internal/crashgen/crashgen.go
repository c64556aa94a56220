// Package crashgen makes the crash test's events: event i of a run with a
// given seed is always the same event, id and bytes included, so that an
// agent killed and restarted can make it again, and the test can check
// what the backend holds byte for byte.
package crashgen

import (
	"fmt"
	"math/rand"
	"time"

	"github.com/dcagent/dcagent/agent/event"
)

// SystemID is the crash agent's device.
const SystemID = "SYS-CRASH-0001"

var base = time.Date(2025, 6, 1, 0, 0, 0, 0, time.UTC)

// Event returns event i of the run with seed.
func Event(seed int64, i int) *event.Event {
	r := rand.New(rand.NewSource(seed*1_000_003 + int64(i)))
	var entropy [10]byte
	r.Read(entropy[:])
	created := base.Add(time.Duration(i) * time.Millisecond)
	sev := event.Severity(1 + r.Intn(5))
	payload := map[string]any{
		"source":    "sensor",
		"condition": "over_temperature",
		"state":     []string{"raised", "cleared"}[r.Intn(2)],
		"message":   fmt.Sprintf("event %d: fan %d at %d RPM", i, r.Intn(8), 1000+r.Intn(9000)),
		"value":     float64(r.Intn(10000)) / 10,
		"unit":      "RPM",
		"reasons":   make([]string, r.Intn(4)),
	}
	for j := range payload["reasons"].([]string) {
		payload["reasons"].([]string)[j] = fmt.Sprintf("reason %d of event %d", j, i)
	}
	return &event.Event{
		ID:       event.FormatID(uint64(created.UnixMilli()), entropy),
		Type:     event.TypeAlert,
		Severity: sev,
		Created:  created,
		SystemID: SystemID,
		Payload:  payload,
	}
}
