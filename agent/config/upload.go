package config

import "time"

// Upload configures connect-home: the main channel and the failovers.
type Upload struct {
	// FailoverAfter is how long the main channel must have failed before
	// events go by a failover channel.
	FailoverAfter time.Duration `conf:"failover_after"`
	// HealthReportInterval is how often a full health report is sent.
	HealthReportInterval time.Duration `conf:"health_report_interval"`
}

func (u *Upload) setDefaults() {
	u.FailoverAfter = 4 * time.Hour
	u.HealthReportInterval = 24 * time.Hour
}
