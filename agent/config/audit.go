package config

// Audit configures the audit log's syslog stream.
type Audit struct {
	// SyslogAddr is the customer's syslog server host:port; empty for none.
	SyslogAddr string `conf:"syslog_addr"`
	// SyslogTLS selects RFC 5425 TLS instead of plain TCP.
	SyslogTLS    bool   `conf:"syslog_tls"`
	SyslogCAFile string `conf:"syslog_ca_file"`
}
