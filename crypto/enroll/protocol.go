// Package enroll is the device side of enrollment and renewal with the
// vendor backend's private CA, and the wire protocol both sides share.
//
// # Protocol
//
// Both calls are HTTPS POSTs with JSON bodies; byte fields are base64
// (encoding/json's []byte). The device verifies the backend against the
// pinned vendor CA only.
//
// Enrollment, POST /v1/enroll, without a client certificate:
//
//	round 1: {"token", "csr", "attestation"?}
//	         -> {"chain"}                        issued (no TPM proof asked)
//	         -> {"challenge": {"id", "credential_blob", "encrypted_secret", "expires"}}
//	round 2: {"token", "challenge_id", "secret"}  (the secret the TPM recovered)
//	         -> {"chain"}
//
// The CSR's subject carries the system ID as CommonName and the model as
// OrganizationalUnit, and it is signed by the device key. The token is
// one-time, expires, and is bound to one system ID. The attestation
// (keystore.Evidence) carries TPM2_Certify of the device key by the TPM's
// attestation key, over qualifying data SHA-256(CSR DER), plus the
// endorsement key and its certificate; the challenge is a credential
// made for that EK and AK name, which only the same TPM can activate.
//
// Renewal, POST /v1/renew, over mutual TLS with the current certificate:
//
//	{"csr"} -> {"chain"}
//
// The CSR must carry the enrolled key (the backend compares it with the
// TLS client certificate's and with its enrollment record).
//
// "chain" is PEM: the device certificate first, then its issuers.
// Failures are {"code", "error"} with a 4xx or 5xx status; codes are the
// Code* constants.
package enroll

import (
	"time"

	"github.com/dcagent/dcagent/crypto/keystore"
)

// Paths of the two calls.
const (
	PathEnroll = "/v1/enroll"
	PathRenew  = "/v1/renew"
)

// EnrollRequest is the body of POST /v1/enroll, both rounds.
type EnrollRequest struct {
	Token       string             `json:"token"`
	CSR         []byte             `json:"csr,omitempty"`
	Attestation *keystore.Evidence `json:"attestation,omitempty"`
	ChallengeID string             `json:"challenge_id,omitempty"`
	Secret      []byte             `json:"secret,omitempty"`
}

// Challenge asks the device's TPM to activate a credential.
type Challenge struct {
	ID              string    `json:"id"`
	CredentialBlob  []byte    `json:"credential_blob"`
	EncryptedSecret []byte    `json:"encrypted_secret"`
	Expires         time.Time `json:"expires"`
}

// Response is the body of a successful answer to either call.
type Response struct {
	Chain     string     `json:"chain,omitempty"`
	Challenge *Challenge `json:"challenge,omitempty"`
}

// RenewRequest is the body of POST /v1/renew.
type RenewRequest struct {
	CSR []byte `json:"csr"`
}

// ErrorBody is the body of a failed call.
type ErrorBody struct {
	Code  string `json:"code"`
	Error string `json:"error"`
}

// Error codes the backend answers with.
const (
	CodeBadRequest          = "bad_request"
	CodeTokenUnknown        = "token_unknown"
	CodeTokenUsed           = "token_used"
	CodeTokenExpired        = "token_expired"
	CodeTokenWrongDevice    = "token_wrong_device"
	CodeCSRInvalid          = "csr_invalid"
	CodeAttestationRequired = "attestation_required"
	CodeAttestationInvalid  = "attestation_invalid"
	CodeChallengeUnknown    = "challenge_unknown"
	CodeChallengeFailed     = "challenge_failed"
	CodeKeyMismatch         = "key_mismatch"
	CodeUnauthenticated     = "unauthenticated"
	CodeRevoked             = "revoked"
	CodeInternal            = "internal"
)
