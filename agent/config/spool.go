package config

// Spool bounds the on-disk event spool (agent/spool), kept in
// <state_dir>/spool. When it is full, the oldest events of the lowest
// severity are dropped first; events of severity error or above never are.
// Each spooled event also costs about 170 bytes of memory for the index,
// so max_events bounds memory too (20000 events: about 3.4 MB); a week
// without network is a few thousand events on a typical device.
type Spool struct {
	MaxBytes  int64 `conf:"max_bytes"`  // bytes of spool files, e.g. 64M
	MaxEvents int   `conf:"max_events"` // events
}

func (s *Spool) setDefaults() {
	s.MaxBytes = 64 << 20
	s.MaxEvents = 20000
}

func (s *Spool) validate() error {
	if s.MaxBytes < 64<<10 {
		return keyErr("max_bytes", "%d is too small: at least 64K, so that one health report fits", s.MaxBytes)
	}
	if s.MaxEvents < 10 {
		return keyErr("max_events", "%d is too small: at least 10", s.MaxEvents)
	}
	return nil
}
