package ca

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/dcagent/dcagent/crypto/enroll"
	"github.com/dcagent/dcagent/crypto/keystore"
)

// AuthError is a refused device: why, as a status and code for the
// answer, and a message for the person reading it.
type AuthError struct {
	Status  int
	Code    string
	Message string
}

func (e *AuthError) Error() string { return "ca: " + e.Message }

func apiErr(status int, code, format string, args ...any) *AuthError {
	return &AuthError{Status: status, Code: code, Message: fmt.Sprintf(format, args...)}
}

// Authenticate says which device sent a request over mutual TLS: the
// client certificate must chain to this CA, be for client authentication,
// be valid now, not be revoked, carry the enrolled key of the device it
// names, and name a valid system ID. The error is an *AuthError.
func (ca *CA) Authenticate(r *http.Request) (string, error) {
	if r.TLS == nil {
		return "", apiErr(http.StatusUnauthorized, enroll.CodeUnauthenticated, "not a TLS connection")
	}
	if len(r.TLS.PeerCertificates) == 0 {
		return "", apiErr(http.StatusUnauthorized, enroll.CodeUnauthenticated, "no client certificate: the device must enroll first")
	}
	return ca.AuthenticateCert(r.TLS.PeerCertificates[0])
}

// AuthenticateCert is Authenticate for a certificate that arrived some
// other way (a DTLS session).
func (ca *CA) AuthenticateCert(leaf *x509.Certificate) (string, error) {
	if leaf == nil {
		return "", apiErr(http.StatusUnauthorized, enroll.CodeUnauthenticated, "no client certificate")
	}
	now := ca.now()
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: ca.pool, CurrentTime: now, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		var inv x509.CertificateInvalidError
		if errors.As(err, &inv) && inv.Reason == x509.Expired {
			return "", apiErr(http.StatusUnauthorized, enroll.CodeUnauthenticated, "client certificate %s of %q is not valid at %s (valid %s to %s)",
				leaf.SerialNumber.Text(16), leaf.Subject.CommonName, now.UTC().Format(time.RFC3339), leaf.NotBefore.UTC().Format(time.RFC3339), leaf.NotAfter.UTC().Format(time.RFC3339))
		}
		return "", apiErr(http.StatusUnauthorized, enroll.CodeUnauthenticated, "client certificate of %q was not issued by this CA: %v", leaf.Subject.CommonName, err)
	}
	systemID := leaf.Subject.CommonName
	if !ValidSystemID(systemID) {
		return "", apiErr(http.StatusUnauthorized, enroll.CodeUnauthenticated, "client certificate names no valid system ID")
	}
	ca.mu.Lock()
	when, revoked := ca.revoked[leaf.SerialNumber.Text(16)]
	enrolled := ca.enrolledKeyLocked(systemID)
	ca.mu.Unlock()
	if revoked {
		return "", apiErr(http.StatusForbidden, enroll.CodeRevoked, "client certificate %s of %q was revoked at %s", leaf.SerialNumber.Text(16), systemID, when.UTC().Format(time.RFC3339))
	}
	if enrolled == "" {
		return "", apiErr(http.StatusForbidden, enroll.CodeUnauthenticated, "device %q has no enrollment record", systemID)
	}
	fp, err := keystore.Fingerprint(leaf.PublicKey)
	if err != nil || fp != enrolled {
		return "", apiErr(http.StatusForbidden, enroll.CodeKeyMismatch, "client certificate of %q is for a key that is no longer the device's enrolled key", systemID)
	}
	return systemID, nil
}

type ctxKey struct{}

// RequireDevice lets a request through to next only from an
// authenticated device, whose system ID DeviceID then returns; others
// get 401 or 403 with a JSON body naming the reason.
func (ca *CA) RequireDevice(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id, err := ca.Authenticate(r)
		if err != nil {
			ca.refuse(w, r, "", err)
			return
		}
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), ctxKey{}, id)))
	})
}

// DeviceID is the system ID RequireDevice authenticated ("" outside it).
func DeviceID(r *http.Request) string {
	id, _ := r.Context().Value(ctxKey{}).(string)
	return id
}
