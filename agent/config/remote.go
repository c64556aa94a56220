package config

import "time"

// Remote configures remote access. Services map a service name that a
// request may name to a local address that only this file can set.
type Remote struct {
	Services    map[string]string `conf:"services"` // ssh=127.0.0.1:22, console=127.0.0.1:443
	IdleTimeout time.Duration     `conf:"idle_timeout"`
	MaxDuration time.Duration     `conf:"max_duration"`
}

func (r *Remote) setDefaults() {
	r.IdleTimeout = 15 * time.Minute
	r.MaxDuration = 4 * time.Hour
}
