package config

// Spool bounds the on-disk event spool.
type Spool struct {
	MaxBytes  int64 `conf:"max_bytes"`
	MaxEvents int   `conf:"max_events"`
}

func (s *Spool) setDefaults() {
	s.MaxBytes = 64 << 20
	s.MaxEvents = 100000
}
