package config

import (
	"net"
	"strconv"
	"strings"
)

// Audit configures the audit log's anchor and its syslog stream.
type Audit struct {
	// SyslogAddr is the customer's syslog server host:port; empty for none.
	SyslogAddr string `conf:"syslog_addr"`
	// SyslogTLS selects RFC 5425 TLS instead of plain TCP.
	SyslogTLS bool `conf:"syslog_tls"`
	// SyslogCAFile pins the syslog server's CA (PEM) for TLS.
	SyslogCAFile string `conf:"syslog_ca_file"`
	// TPMCounter is the TPM NV index of the monotonic counter that anchors
	// the audit log (hex, 0x01000000-0x01FFFFFF), used when the device key
	// is in a TPM; "none" anchors in the syslog stream only.
	TPMCounter string `conf:"tpm_counter"`
}

func (a *Audit) setDefaults() { a.TPMCounter = "0x01800010" }

func (a *Audit) validate() error {
	if a.SyslogAddr != "" {
		if _, port, err := net.SplitHostPort(a.SyslogAddr); err != nil || port == "" {
			return keyErr("syslog_addr", "%q is not host:port", a.SyslogAddr)
		}
	}
	if a.SyslogTLS && a.SyslogCAFile == "" {
		return keyErr("syslog_ca_file", "must be set with syslog_tls: it pins the syslog server's CA")
	}
	if _, _, err := a.CounterIndex(); err != nil {
		return keyErr("tpm_counter", "%v", err)
	}
	return nil
}

// CounterIndex returns the NV index of the audit counter, or ok=false for
// "none".
func (a *Audit) CounterIndex() (index uint32, ok bool, err error) {
	if a.TPMCounter == "none" {
		return 0, false, nil
	}
	v, perr := strconv.ParseUint(strings.TrimPrefix(strings.ToLower(a.TPMCounter), "0x"), 16, 32)
	if perr != nil || !strings.HasPrefix(strings.ToLower(a.TPMCounter), "0x") || v < 0x01000000 || v > 0x01FFFFFF {
		return 0, false, errInvalidCounter(a.TPMCounter)
	}
	return uint32(v), true, nil
}

type errInvalidCounter string

func (e errInvalidCounter) Error() string {
	return strconv.Quote(string(e)) + " is not none or an NV index 0x01000000-0x01FFFFFF"
}
