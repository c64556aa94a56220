package connecthome

import (
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strings"

	"github.com/dcagent/dcagent/agent/config"
	"github.com/dcagent/dcagent/agent/connecthome/sealed"
	"github.com/dcagent/dcagent/crypto/tlsconf"
)

// New makes an uploader from the agent's configuration ([backend] url and
// [upload]). It reads the vendor key, the relays' CA files and the
// password files now, so that a mistake shows at start, naming the file.
func New(cfg *config.Config, sp Spool, tlsConfig *tls.Config, logger *slog.Logger) (*Uploader, error) {
	opts, err := OptionsFromConfig(cfg)
	if err != nil {
		return nil, err
	}
	return NewWithOptions(opts, sp, tlsConfig, logger)
}

// OptionsFromConfig builds Options from the configuration.
func OptionsFromConfig(cfg *config.Config) (Options, error) {
	u := cfg.Upload
	o := Options{
		BackendURL:     cfg.Backend.URL,
		BatchEvents:    u.BatchEvents,
		BatchBytes:     u.BatchBytes,
		RetryMin:       u.RetryMin,
		RetryMax:       u.RetryMax,
		RequestTimeout: u.RequestTimeout,
		FailoverAfter:  u.FailoverAfter,
	}
	if len(u.Failover) == 0 {
		return o, nil
	}
	key, err := sealed.LoadVendorKey(u.VendorKeyFile)
	if err != nil {
		return o, fmt.Errorf("connecthome: [upload] vendor_key_file: %w", err)
	}
	o.VendorKey = key
	for _, ch := range u.Failover {
		switch ch {
		case "smtp":
			tc, err := relayTLS(u.SMTPCAFile, u.SMTPAddr, "smtp_ca_file")
			if err != nil {
				return o, err
			}
			pw, err := readSecret(u.SMTPPasswordFile, "smtp_password_file")
			if err != nil {
				return o, err
			}
			o.Failover = append(o.Failover, &SMTPChannel{Addr: u.SMTPAddr, From: u.SMTPFrom, To: u.SMTPTo, User: u.SMTPUser, Password: pw, TLS: tc})
		case "ftps":
			tc, err := relayTLS(u.FTPSCAFile, u.FTPSAddr, "ftps_ca_file")
			if err != nil {
				return o, err
			}
			pw, err := readSecret(u.FTPSPasswordFile, "ftps_password_file")
			if err != nil {
				return o, err
			}
			o.Failover = append(o.Failover, &FTPSChannel{Addr: u.FTPSAddr, User: u.FTPSUser, Password: pw, Dir: u.FTPSDir, TLS: tc})
		}
	}
	return o, nil
}

func relayTLS(caFile, addr, key string) (*tls.Config, error) {
	pool, err := tlsconf.LoadCAFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("connecthome: [upload] %s: %w", key, err)
	}
	host, _, _ := net.SplitHostPort(addr)
	return tlsconf.Client(pool, nil, host)
}

// readSecret reads a password file; "" means no password. The value is
// never logged.
func readSecret(path, key string) (string, error) {
	if path == "" {
		return "", nil
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("connecthome: [upload] %s: %w", key, err)
	}
	return strings.TrimRight(string(b), "\r\n"), nil
}
