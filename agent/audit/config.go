package audit

import (
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"

	"github.com/dcagent/dcagent/agent/config"
	"github.com/dcagent/dcagent/crypto/tlsconf"
)

// NewSyslogFromConfig prepares the stream that [audit] configures, or
// returns nil when syslog_addr is empty. With syslog_tls, the server is
// verified against syslog_ca_file, and cert (the device certificate, or
// nil) is offered to servers that ask for one.
func NewSyslogFromConfig(l *Log, cfg config.Audit, systemID string, cert *tls.Certificate, logger *slog.Logger) (*Syslog, error) {
	if cfg.SyslogAddr == "" {
		return nil, nil
	}
	opts := SyslogOptions{Addr: cfg.SyslogAddr, Hostname: systemID, Logger: logger}
	if cfg.SyslogTLS {
		pool, err := tlsconf.LoadCAFile(cfg.SyslogCAFile)
		if err != nil {
			return nil, fmt.Errorf("audit: [audit] syslog_ca_file: %w", err)
		}
		host, _, _ := net.SplitHostPort(cfg.SyslogAddr)
		opts.TLS, err = tlsconf.Client(pool, cert, host)
		if err != nil {
			return nil, err
		}
	}
	return NewSyslog(l, opts)
}
