package ca

import (
	"crypto/rand"
	"crypto/subtle"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"time"

	"github.com/dcagent/dcagent/crypto/enroll"
	"github.com/dcagent/dcagent/crypto/keystore"
)

// maxRequest bounds a request body: a CSR and a TPM attestation are a
// few KiB.
const maxRequest = 64 << 10

// challengeTTL is how long a device has to answer a TPM challenge.
const challengeTTL = 5 * time.Minute

// maxChallenges bounds the challenges waiting for an answer.
const maxChallenges = 10000

// challenge is a credential the device's TPM must activate.
type challenge struct {
	tokenHash string
	systemID  string
	model     string
	csr       *x509.CertificateRequest
	secret    []byte
	expires   time.Time
	ekFP      string
}

// Handler serves POST /v1/enroll and POST /v1/renew (see crypto/enroll
// for the protocol). Mount it under both paths, on a server using
// ServerTLSConfig.
func (ca *CA) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST "+enroll.PathEnroll, ca.handleEnroll)
	mux.HandleFunc("POST "+enroll.PathRenew, ca.handleRenew)
	return mux
}

func (ca *CA) refuse(w http.ResponseWriter, r *http.Request, systemID string, err error) {
	var ae *AuthError
	if !errors.As(err, &ae) {
		ae = apiErr(http.StatusInternalServerError, enroll.CodeInternal, "%v", err)
	}
	ca.log.Info("ca: refused", "path", r.URL.Path, "peer", r.RemoteAddr, "system_id", systemID, "code", ae.Code, "reason", ae.Message)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(ae.Status)
	_ = json.NewEncoder(w).Encode(enroll.ErrorBody{Code: ae.Code, Error: ae.Message})
}

func reply(w http.ResponseWriter, rsp *enroll.Response) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(rsp)
}

func decode(r *http.Request, v any) error {
	data, err := io.ReadAll(io.LimitReader(r.Body, maxRequest+1))
	if err != nil {
		return apiErr(http.StatusBadRequest, enroll.CodeBadRequest, "reading the request: %v", err)
	}
	if len(data) > maxRequest {
		return apiErr(http.StatusRequestEntityTooLarge, enroll.CodeBadRequest, "request larger than %d bytes", maxRequest)
	}
	if err := json.Unmarshal(data, v); err != nil {
		return apiErr(http.StatusBadRequest, enroll.CodeBadRequest, "the request is not the expected JSON: %v", err)
	}
	return nil
}

// parseCSR reads a CSR and checks its own signature: the device holds
// the key it asks a certificate for.
func parseCSR(der []byte) (*x509.CertificateRequest, error) {
	csr, err := x509.ParseCertificateRequest(der)
	if err != nil {
		return nil, apiErr(http.StatusBadRequest, enroll.CodeCSRInvalid, "CSR: %v", err)
	}
	if err := csr.CheckSignature(); err != nil {
		return nil, apiErr(http.StatusBadRequest, enroll.CodeCSRInvalid, "the CSR's signature does not verify with its own key: %v", err)
	}
	if !ValidSystemID(csr.Subject.CommonName) {
		return nil, apiErr(http.StatusBadRequest, enroll.CodeCSRInvalid, "the CSR's CommonName %q is not a valid system ID", csr.Subject.CommonName)
	}
	return csr, nil
}

func csrModel(csr *x509.CertificateRequest) string {
	if len(csr.Subject.OrganizationalUnit) > 0 && len(csr.Subject.OrganizationalUnit[0]) <= 64 {
		return csr.Subject.OrganizationalUnit[0]
	}
	return ""
}

func (ca *CA) handleEnroll(w http.ResponseWriter, r *http.Request) {
	var req enroll.EnrollRequest
	if err := decode(r, &req); err != nil {
		ca.refuse(w, r, "", err)
		return
	}
	if req.ChallengeID != "" {
		ca.finishEnroll(w, r, &req)
		return
	}
	csr, err := parseCSR(req.CSR)
	if err != nil {
		ca.refuse(w, r, "", err)
		return
	}
	systemID := csr.Subject.CommonName
	if err := ca.checkToken(req.Token, systemID); err != nil {
		ca.refuse(w, r, systemID, err)
		return
	}
	if req.Attestation == nil {
		if ca.cfg.RequireTPM {
			ca.refuse(w, r, systemID, apiErr(http.StatusForbidden, enroll.CodeAttestationRequired,
				"this backend enrolls TPM keys only: the request carries no TPM attestation (is the key URI a tpm: URI, and does the TPM have an endorsement key certificate?)"))
			return
		}
		chain, err := ca.enrollDevice(req.Token, csr, false, "")
		if err != nil {
			ca.refuse(w, r, systemID, err)
			return
		}
		reply(w, &enroll.Response{Chain: chain})
		return
	}
	v, err := ca.verifyEvidence(req.Attestation, csr.PublicKey, enroll.QualifyingData(req.CSR))
	if err != nil {
		ca.refuse(w, r, systemID, err)
		return
	}
	secret := make([]byte, 32)
	if _, err := rand.Read(secret); err != nil {
		ca.refuse(w, r, systemID, err)
		return
	}
	blob, encSecret, err := makeCredential(v, secret, rand.Read)
	if err != nil {
		ca.refuse(w, r, systemID, attErr("%v", err))
		return
	}
	idb := make([]byte, 16)
	_, _ = rand.Read(idb)
	id := hex.EncodeToString(idb)
	expires := ca.now().Add(challengeTTL)
	ca.mu.Lock()
	ca.pruneChallengesLocked()
	if len(ca.challenges) >= maxChallenges {
		ca.mu.Unlock()
		ca.refuse(w, r, systemID, apiErr(http.StatusServiceUnavailable, enroll.CodeInternal, "too many enrollments in progress; try again in a minute"))
		return
	}
	ca.challenges[id] = &challenge{tokenHash: tokenHash(req.Token), systemID: systemID, model: csrModel(csr), csr: csr, secret: secret, expires: expires, ekFP: v.ekCertFingerprint}
	ca.mu.Unlock()
	ca.log.Info("ca: TPM attestation verified; challenge sent", "system_id", systemID, "challenge", id, "ek", v.ekCertFingerprint)
	reply(w, &enroll.Response{Challenge: &enroll.Challenge{ID: id, CredentialBlob: blob, EncryptedSecret: encSecret, Expires: expires}})
}

func (ca *CA) pruneChallengesLocked() {
	now := ca.now()
	for id, c := range ca.challenges {
		if now.After(c.expires) {
			delete(ca.challenges, id)
		}
	}
}

// finishEnroll checks the TPM's answer to a challenge and issues.
func (ca *CA) finishEnroll(w http.ResponseWriter, r *http.Request, req *enroll.EnrollRequest) {
	ca.mu.Lock()
	c := ca.challenges[req.ChallengeID]
	if c != nil {
		// One answer per challenge, right or wrong.
		delete(ca.challenges, req.ChallengeID)
	}
	ca.mu.Unlock()
	if c == nil || ca.now().After(c.expires) {
		ca.refuse(w, r, "", apiErr(http.StatusForbidden, enroll.CodeChallengeUnknown, "unknown or expired challenge; start the enrollment again"))
		return
	}
	if subtle.ConstantTimeCompare([]byte(tokenHash(req.Token)), []byte(c.tokenHash)) != 1 {
		ca.refuse(w, r, c.systemID, apiErr(http.StatusForbidden, enroll.CodeChallengeFailed, "the answer comes with another token than the request"))
		return
	}
	if subtle.ConstantTimeCompare(req.Secret, c.secret) != 1 {
		ca.refuse(w, r, c.systemID, apiErr(http.StatusForbidden, enroll.CodeChallengeFailed,
			"the TPM did not recover the credential: its endorsement key and attestation key are not in one TPM"))
		return
	}
	chain, err := ca.enrollDevice(req.Token, c.csr, true, c.ekFP)
	if err != nil {
		ca.refuse(w, r, c.systemID, err)
		return
	}
	reply(w, &enroll.Response{Chain: chain})
}

// enrollDevice uses the token up, issues, and records the device. An
// earlier enrollment of the same system ID is replaced and its
// certificates revoked.
func (ca *CA) enrollDevice(token string, csr *x509.CertificateRequest, attested bool, ekFP string) (string, error) {
	systemID := csr.Subject.CommonName
	fp, err := keystore.Fingerprint(csr.PublicKey)
	if err != nil {
		return "", apiErr(http.StatusBadRequest, enroll.CodeCSRInvalid, "%v", err)
	}
	ca.mu.Lock()
	defer ca.mu.Unlock()
	if err := ca.useToken(token, systemID); err != nil {
		return "", err
	}
	leaf, err := ca.issue(csr.PublicKey, systemID, csrModel(csr))
	if err != nil {
		return "", err
	}
	if old, err := ca.loadDevice(systemID); err == nil && len(old.Serials) > 0 {
		if err := ca.revokeLocked(old.Serials...); err != nil {
			return "", err
		}
	}
	rec := &deviceRecord{SystemID: systemID, Model: csrModel(csr), KeyFingerprint: fp, TPMAttested: attested, EKFingerprint: ekFP,
		Serials: []string{leaf.SerialNumber.Text(16)}, EnrolledAt: ca.now()}
	if err := ca.saveDevice(rec); err != nil {
		return "", err
	}
	ca.log.Info("ca: enrolled", "system_id", systemID, "serial", leaf.SerialNumber.Text(16), "tpm_attested", attested, "key", fp, "not_after", leaf.NotAfter)
	return ca.chainPEM(leaf), nil
}

func (ca *CA) handleRenew(w http.ResponseWriter, r *http.Request) {
	systemID, err := ca.Authenticate(r)
	if err != nil {
		ca.refuse(w, r, "", err)
		return
	}
	var req enroll.RenewRequest
	if err := decode(r, &req); err != nil {
		ca.refuse(w, r, systemID, err)
		return
	}
	csr, err := parseCSR(req.CSR)
	if err != nil {
		ca.refuse(w, r, systemID, err)
		return
	}
	if csr.Subject.CommonName != systemID {
		ca.refuse(w, r, systemID, apiErr(http.StatusForbidden, enroll.CodeCSRInvalid, "the CSR names %q, the client certificate %q", csr.Subject.CommonName, systemID))
		return
	}
	// The TLS handshake proved the client holds the certificate's key;
	// the CSR must be for that same key, which is the enrolled one
	// (Authenticate checked the certificate against the record).
	if !publicEqual(csr.PublicKey, r.TLS.PeerCertificates[0].PublicKey) {
		ca.refuse(w, r, systemID, apiErr(http.StatusForbidden, enroll.CodeKeyMismatch, "renewal is for the enrolled key only: the CSR carries another key (a new key needs a new enrollment)"))
		return
	}
	ca.mu.Lock()
	defer ca.mu.Unlock()
	rec, err := ca.loadDevice(systemID)
	if err != nil {
		ca.refuse(w, r, systemID, err)
		return
	}
	leaf, err := ca.issue(csr.PublicKey, systemID, rec.Model)
	if err != nil {
		ca.refuse(w, r, systemID, err)
		return
	}
	rec.Serials = append(rec.Serials, leaf.SerialNumber.Text(16))
	if len(rec.Serials) > 16 {
		// Older certificates have expired; keep the record small.
		rec.Serials = rec.Serials[len(rec.Serials)-16:]
	}
	rec.RenewedAt = ca.now()
	if err := ca.saveDevice(rec); err != nil {
		ca.refuse(w, r, systemID, err)
		return
	}
	ca.log.Info("ca: renewed", "system_id", systemID, "serial", leaf.SerialNumber.Text(16), "not_after", leaf.NotAfter)
	reply(w, &enroll.Response{Chain: ca.chainPEM(leaf)})
}
