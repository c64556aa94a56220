package config

import "time"

// Heartbeat configures the DTLS heartbeat and its HTTPS fallback.
type Heartbeat struct {
	Interval time.Duration `conf:"interval"`
	// UDPTries is how many heartbeats may go unanswered over DTLS before
	// the agent falls back to HTTPS.
	UDPTries   int           `conf:"udp_tries"`
	BackoffMax time.Duration `conf:"backoff_max"`
}

func (h *Heartbeat) setDefaults() {
	h.Interval = time.Minute
	h.UDPTries = 3
	h.BackoffMax = 10 * time.Minute
}
