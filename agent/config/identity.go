package config

import "time"

// Identity names the device key and governs certificate renewal.
type Identity struct {
	// KeyURI names the key store: tpm:..., pkcs11:..., or file:... (development only).
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
	return nil
}
