package config

import (
	"fmt"
	"net"
	"time"
)

// Upload configures connect-home (agent/connecthome): the main channel,
// HTTPS to [backend] url over mutual TLS, and the failover channels that
// take over when it has failed for longer than failover_after: the
// customer's mail server (SMTP with STARTTLS and authentication) and FTPS
// (explicit TLS). Every event sent by failover is encrypted to the
// vendor's public key (vendor_key_file) and signed with the device key, so
// the customer's relay can neither read nor forge it.
type Upload struct {
	// FailoverAfter is how long the main channel must have failed before
	// events go by a failover channel.
	FailoverAfter time.Duration `conf:"failover_after"`
	// HealthReportInterval is how often a full health report is sent.
	HealthReportInterval time.Duration `conf:"health_report_interval"`

	// BatchEvents and BatchBytes bound one upload request.
	BatchEvents int   `conf:"batch_events"`
	BatchBytes  int64 `conf:"batch_bytes"`
	// RetryMin and RetryMax bound the jittered exponential back-off after
	// a failure; a longer Retry-After from the backend wins.
	RetryMin time.Duration `conf:"retry_min"`
	RetryMax time.Duration `conf:"retry_max"`
	// RequestTimeout bounds one request, connection set-up included.
	RequestTimeout time.Duration `conf:"request_timeout"`

	// Failover lists the failover channels in the order to try: smtp, ftps.
	// Empty means no failover.
	Failover []string `conf:"failover"`
	// VendorKeyFile is the vendor's X25519 public key (PEM) that failover
	// events are encrypted to.
	VendorKeyFile string `conf:"vendor_key_file"`

	// The customer's mail relay.
	SMTPAddr         string `conf:"smtp_addr"` // host:port, STARTTLS is required
	SMTPFrom         string `conf:"smtp_from"`
	SMTPTo           string `conf:"smtp_to"` // the vendor's inbound address
	SMTPUser         string `conf:"smtp_user"`
	SMTPPasswordFile string `conf:"smtp_password_file"`
	SMTPCAFile       string `conf:"smtp_ca_file"` // CA that signed the relay's certificate

	// The customer's FTPS server (explicit TLS: AUTH TLS on the control port).
	FTPSAddr         string `conf:"ftps_addr"`
	FTPSUser         string `conf:"ftps_user"`
	FTPSPasswordFile string `conf:"ftps_password_file"`
	FTPSDir          string `conf:"ftps_dir"`
	FTPSCAFile       string `conf:"ftps_ca_file"`
}

func (u *Upload) setDefaults() {
	u.FailoverAfter = 4 * time.Hour
	u.HealthReportInterval = 24 * time.Hour
	u.BatchEvents = 1000
	u.BatchBytes = 1 << 20
	u.RetryMin = 2 * time.Second
	u.RetryMax = 10 * time.Minute
	u.RequestTimeout = 60 * time.Second
}

func (u *Upload) validate() error {
	if u.BatchEvents < 1 || u.BatchEvents > 10000 {
		return keyErr("batch_events", "%d is outside 1..10000", u.BatchEvents)
	}
	if u.BatchBytes < 64<<10 || u.BatchBytes > 64<<20 {
		return keyErr("batch_bytes", "%d is outside 64K..64M", u.BatchBytes)
	}
	if u.RetryMin <= 0 {
		return keyErr("retry_min", "must be more than 0")
	}
	if u.RetryMax < u.RetryMin {
		return keyErr("retry_max", "%s is less than retry_min %s", u.RetryMax, u.RetryMin)
	}
	if u.RequestTimeout < time.Second {
		return keyErr("request_timeout", "%s is too short (at least 1s)", u.RequestTimeout)
	}
	for _, ch := range u.Failover {
		switch ch {
		case "smtp":
			for key, v := range map[string]string{"smtp_addr": u.SMTPAddr, "smtp_from": u.SMTPFrom, "smtp_to": u.SMTPTo, "smtp_ca_file": u.SMTPCAFile} {
				if v == "" {
					return keyErr(key, "must be set when failover lists smtp")
				}
			}
			if err := hostPort(u.SMTPAddr); err != nil {
				return keyErr("smtp_addr", "%v", err)
			}
		case "ftps":
			for key, v := range map[string]string{"ftps_addr": u.FTPSAddr, "ftps_user": u.FTPSUser, "ftps_ca_file": u.FTPSCAFile} {
				if v == "" {
					return keyErr(key, "must be set when failover lists ftps")
				}
			}
			if err := hostPort(u.FTPSAddr); err != nil {
				return keyErr("ftps_addr", "%v", err)
			}
		default:
			return keyErr("failover", "unknown channel %q (known: smtp, ftps)", ch)
		}
	}
	if len(u.Failover) > 0 && u.VendorKeyFile == "" {
		return keyErr("vendor_key_file", "must be set when failover is: failover events are encrypted to it")
	}
	return nil
}

func hostPort(s string) error {
	if _, _, err := net.SplitHostPort(s); err != nil {
		return fmt.Errorf("%q is not host:port", s)
	}
	return nil
}
