package config

import (
	"strings"
	"time"
)

// Identity names the device key and governs certificate renewal (see
// crypto/identity).
type Identity struct {
	// KeyURI names the key store: tpm:/dev/tpmrm0 (or tpm://host:port for
	// a software TPM), an RFC 7512 pkcs11: URI, or file:PATH (development
	// only). A pkcs11: URI takes its PIN from pin-source=file:PATH or
	// $DCAGENT_PKCS11_PIN, never from pin-value.
	KeyURI string `conf:"key_uri"`
	// RenewAt is the fraction of the certificate lifetime after which the
	// agent renews (default two thirds).
	RenewAt float64 `conf:"renew_at"`
	// RetryMin and RetryMax bound the back-off between failed renewals.
	RetryMin time.Duration `conf:"retry_min"`
	RetryMax time.Duration `conf:"retry_max"`
}

func (i *Identity) setDefaults() {
	i.RenewAt = 2.0 / 3.0
	i.RetryMin = 30 * time.Second
	i.RetryMax = time.Hour
}

func (i *Identity) validate() error {
	if i.RenewAt <= 0 || i.RenewAt >= 1 {
		return keyErr("renew_at", "%v must be between 0 and 1 (a fraction of the certificate lifetime)", i.RenewAt)
	}
	if i.RetryMin <= 0 {
		return keyErr("retry_min", "must be more than 0")
	}
	if i.RetryMax < i.RetryMin {
		return keyErr("retry_max", "%s is less than retry_min %s", i.RetryMax, i.RetryMin)
	}
	if i.KeyURI != "" {
		scheme, _, ok := strings.Cut(i.KeyURI, ":")
		switch strings.ToLower(scheme) {
		case "tpm", "pkcs11", "file":
		default:
			if !ok {
				scheme = i.KeyURI
			}
			return keyErr("key_uri", "%q is not a key URI: it must start with tpm:, pkcs11: or file:", scheme)
		}
		// A PIN written here would sit in a file that backups, support
		// bundles and diagnostics copy around.
		if strings.Contains(strings.ToLower(i.KeyURI), "pin-value=") {
			return keyErr("key_uri", "holds a pin-value: a PIN must not be in the configuration; use pin-source=file:/etc/dcagent/pin (mode 0600) or $DCAGENT_PKCS11_PIN")
		}
	}
	return nil
}
