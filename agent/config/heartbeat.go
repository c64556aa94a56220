package config

import (
	"net"
	"time"
)

// Heartbeat configures the DTLS heartbeat and its HTTPS fallback. The
// backend's addresses are in [backend] (heartbeat_addr for DTLS, url for
// HTTPS).
type Heartbeat struct {
	// Interval is the time between heartbeats in the steady state (each
	// is jittered by ±10% so that a fleet does not beat in step).
	Interval time.Duration `conf:"interval"`
	// ReplyTimeout is how long the agent waits for a reply (and for a
	// DTLS handshake) before it counts a try as unanswered.
	ReplyTimeout time.Duration `conf:"reply_timeout"`
	// UDPTries is how many tries may go unanswered over DTLS before the
	// agent falls back to HTTPS; the fallback comes at most
	// udp_tries × reply_timeout after the first unanswered heartbeat.
	UDPTries int `conf:"udp_tries"`
	// UDPProbeInterval is how often the agent tries DTLS again while it
	// runs on HTTPS; DTLS is preferred as soon as it answers.
	UDPProbeInterval time.Duration `conf:"udp_probe_interval"`
	// BackoffMin and BackoffMax bound the jittered, doubling wait after
	// both channels failed. A network change (netlink) ends the wait at
	// once.
	BackoffMin time.Duration `conf:"backoff_min"`
	BackoffMax time.Duration `conf:"backoff_max"`
	// SessionMaxAge is when the agent makes a fresh DTLS handshake even
	// though the session works (new keys, a renewed certificate).
	SessionMaxAge time.Duration `conf:"session_max_age"`
	// TelemetryEvery is the longest the agent goes without sending its
	// full telemetry summary; in between it is sent only when it changed.
	TelemetryEvery time.Duration `conf:"telemetry_every"`
	// ServerName is the name the backend's certificate must carry, when it
	// is not the host of heartbeat_addr (e.g. the backend is addressed by
	// IP address).
	ServerName string `conf:"server_name"`
	// WatchNetwork makes the agent follow netlink address, link and
	// default-route changes and reconnect at once after one.
	WatchNetwork bool `conf:"watch_network"`
}

func (h *Heartbeat) setDefaults() {
	h.Interval = time.Minute
	h.ReplyTimeout = 5 * time.Second
	h.UDPTries = 3
	h.UDPProbeInterval = 5 * time.Minute
	h.BackoffMin = 2 * time.Second
	h.BackoffMax = 10 * time.Minute
	h.SessionMaxAge = 24 * time.Hour
	h.TelemetryEvery = time.Hour
	h.WatchNetwork = true
}

func (h *Heartbeat) validate() error {
	switch {
	case h.Interval < time.Second:
		return keyErr("interval", "%s is under 1s", h.Interval)
	case h.ReplyTimeout < 100*time.Millisecond:
		return keyErr("reply_timeout", "%s is under 100ms", h.ReplyTimeout)
	case h.UDPTries < 1 || h.UDPTries > 100:
		return keyErr("udp_tries", "%d is not between 1 and 100", h.UDPTries)
	case h.UDPProbeInterval < time.Second:
		return keyErr("udp_probe_interval", "%s is under 1s", h.UDPProbeInterval)
	case h.BackoffMin <= 0:
		return keyErr("backoff_min", "must be positive")
	case h.BackoffMax < h.BackoffMin:
		return keyErr("backoff_max", "%s is under backoff_min (%s)", h.BackoffMax, h.BackoffMin)
	case h.SessionMaxAge < time.Minute:
		return keyErr("session_max_age", "%s is under 1m", h.SessionMaxAge)
	case h.TelemetryEvery < h.Interval:
		return keyErr("telemetry_every", "%s is under the interval (%s)", h.TelemetryEvery, h.Interval)
	}
	if h.ServerName != "" && net.ParseIP(h.ServerName) == nil && !isHeartbeatHostName(h.ServerName) {
		return keyErr("server_name", "%q is not a host name", h.ServerName)
	}
	return nil
}

// isHeartbeatHostName accepts letters, digits, hyphens and dots, 1 to 253
// characters, labels of at most 63.
func isHeartbeatHostName(s string) bool {
	if len(s) == 0 || len(s) > 253 {
		return false
	}
	label := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '.':
			if label == 0 {
				return false
			}
			label = 0
			continue
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '-':
		default:
			return false
		}
		label++
		if label > 63 {
			return false
		}
	}
	return label > 0
}
