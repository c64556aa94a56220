package identity

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/dcagent/dcagent/crypto/enroll"
)

// clockSkew is how far before a certificate's notBefore the clock may be
// and still count as right: the CA backdates a little, clocks drift a
// little.
const clockSkew = 5 * time.Minute

// maxWait caps one sleep of the renewal loop, so that a clock corrected
// meanwhile (NTP after boot) is noticed within the hour.
const maxWait = time.Hour

// ClockError is a certificate the clock says cannot be used: the clock
// is far behind (before notBefore) or the certificate has expired. Retrying
// does not help; a person has to fix the clock or enroll again.
type ClockError struct {
	Now       time.Time
	NotBefore time.Time
	NotAfter  time.Time
	Expired   bool // true: after notAfter; false: before notBefore
}

func (e *ClockError) Error() string {
	if e.Expired {
		return fmt.Sprintf("the device certificate expired at %s and the clock says %s: if the clock is right, the device was too long without the backend to renew, so enroll it again with a new token (dcagent enroll --token TOKEN); if the clock is wrong, set it (NTP) and the certificate works again",
			e.NotAfter.UTC().Format(time.RFC3339), e.Now.UTC().Format(time.RFC3339))
	}
	return fmt.Sprintf("the clock says %s, before the device certificate's start %s: the clock is wrong (no RTC battery? NTP not synchronised yet?), and TLS to the backend fails until it is set",
		e.Now.UTC().Format(time.RFC3339), e.NotBefore.UTC().Format(time.RFC3339))
}

// CheckClock says whether the clock lets the certificate be used.
func CheckClock(now time.Time, leaf *x509.Certificate) error {
	switch {
	case now.Before(leaf.NotBefore.Add(-clockSkew)):
		return &ClockError{Now: now, NotBefore: leaf.NotBefore, NotAfter: leaf.NotAfter}
	case now.After(leaf.NotAfter):
		return &ClockError{Now: now, NotBefore: leaf.NotBefore, NotAfter: leaf.NotAfter, Expired: true}
	}
	return nil
}

// RenewTime is when a certificate is due for renewal: the fraction
// renewAt of its lifetime after notBefore.
func RenewTime(leaf *x509.Certificate, renewAt float64) time.Time {
	life := leaf.NotAfter.Sub(leaf.NotBefore)
	return leaf.NotBefore.Add(time.Duration(float64(life) * renewAt))
}

// Run renews the certificate when it is due ([identity] renew_at of its
// lifetime), until ctx ends; it returns ctx.Err(). A failed renewal is
// retried after a back-off that doubles from retry_min to retry_max,
// with jitter, so that a fleet does not return in step. The old
// certificate stays in use until the new one is stored.
//
// A clock that makes the certificate unusable (see ClockError) is
// reported once and looked at again every retry_max, not retried in a
// loop: only a person or NTP can fix it.
func (id *Identity) Run(ctx context.Context) error {
	retryMin, retryMax := id.cfg.Identity.RetryMin, id.cfg.Identity.RetryMax
	if retryMin <= 0 {
		retryMin = time.Second
	}
	if retryMax < retryMin {
		retryMax = retryMin
	}
	backoff := retryMin
	for {
		leaf := id.Leaf()
		now := id.now()
		if err := id.checkClock(now, leaf); err != nil {
			if !sleep(ctx, retryMax) {
				return ctx.Err()
			}
			continue
		}
		if wait := RenewTime(leaf, id.cfg.Identity.RenewAt).Sub(now); wait > 0 {
			if !sleep(ctx, min(wait, maxWait)) {
				return ctx.Err()
			}
			continue
		}
		err := id.RenewNow(ctx)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if err == nil {
			backoff = retryMin
			continue
		}
		d := jitter(backoff)
		id.log.Warn("identity: renewal failed; trying again later", "err", err, "retry_in", d.Round(time.Second), "not_after", leaf.NotAfter)
		backoff = min(2*backoff, retryMax)
		if !sleep(ctx, d) {
			return ctx.Err()
		}
	}
}

// checkClock checks the clock against leaf and reports a change of
// verdict once: a clock that stays wrong is not logged again and again.
func (id *Identity) checkClock(now time.Time, leaf *x509.Certificate) error {
	err := CheckClock(now, leaf)
	verdict := ""
	var ce *ClockError
	if errors.As(err, &ce) {
		verdict = "behind"
		if ce.Expired {
			verdict = "expired"
		}
	}
	id.mu.Lock()
	prev := id.clockVerdict
	id.clockVerdict = verdict
	if err != nil {
		id.lastErr = err
	} else if prev != "" {
		id.lastErr = nil
	}
	id.mu.Unlock()
	switch {
	case verdict != "" && verdict != prev:
		id.log.Error("identity: "+err.Error(), "not_before", leaf.NotBefore, "not_after", leaf.NotAfter)
	case verdict == "" && prev != "":
		id.log.Info("identity: the clock agrees with the certificate again", "now", now)
	}
	return err
}

// RenewNow renews the certificate at once: a CSR signed by the same key,
// POST /v1/renew over mutual TLS with the current certificate, the new
// chain verified and stored atomically, then put in use.
func (id *Identity) RenewNow(ctx context.Context) error {
	id.renewMu.Lock()
	defer id.renewMu.Unlock()
	current, _ := id.Current()
	chain, err := enroll.Renew(ctx, id.backend, id.device(), current)
	if err != nil {
		id.setErr(err)
		return err
	}
	if err := SaveChain(id.cfg.Device.StateDir, chain); err != nil {
		id.setErr(err)
		return err
	}
	if err := id.adopt(chain); err != nil {
		id.setErr(err)
		return err
	}
	id.mu.Lock()
	id.lastRenewal = id.now()
	id.lastErr = nil
	id.mu.Unlock()
	id.log.Info("identity: certificate renewed", "serial", chain[0].SerialNumber.Text(16), "not_after", chain[0].NotAfter)
	return nil
}

func (id *Identity) device() enroll.Device {
	return enroll.Device{SystemID: id.cfg.Device.SystemID, Model: id.cfg.Device.Model, Signer: id.signer}
}

func (id *Identity) setErr(err error) {
	id.mu.Lock()
	id.lastErr = err
	id.mu.Unlock()
}

// jitter picks a duration in [d/2, d].
func jitter(d time.Duration) time.Duration {
	if d <= 1 {
		return d
	}
	return d/2 + rand.N(d/2+1)
}

// sleep waits d or until ctx ends; it reports whether ctx is still live.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// IsClockError reports whether err is a ClockError.
func IsClockError(err error) bool {
	var ce *ClockError
	return errors.As(err, &ce)
}
