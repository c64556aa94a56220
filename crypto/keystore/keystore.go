// Package keystore is the one interface through which dcagent reaches the
// device's private key, wherever it lives. A key is named by a URI whose
// scheme picks the backend:
//
//	tpm:...      a TPM 2.0 (package crypto/tpm): /dev/tpmrm0 or a TCP simulator
//	pkcs11:...   a PKCS#11 token, RFC 7512 (package crypto/p11; cgo builds only)
//	file:...     a PEM file, for development only: every start logs a warning
//
// Backends register themselves by scheme in their package's init (the
// same shape as database/sql drivers); a program that wants them all
// imports crypto/keystore/all. The URI syntax of every scheme is parsed
// here, in pure Go, so that a build without a backend can still read and
// explain a URI it cannot use.
//
// A Store yields a crypto.Signer: the private key never leaves its token,
// and everything else (CSR, TLS, DTLS) signs through it. A Store may offer
// more than signing; callers discover that with a type assertion on the
// small interfaces below:
//
//   - Attester: the TPM's proof that the key lives in it (TPM2_Certify by
//     an attestation key, checked against the endorsement key by credential
//     activation), used by enrollment.
//   - CounterStore: a monotonic counter in the same token, reached through
//     the same connection (the audit log anchors its chain on one).
//
// A TPM allows one client at a time, so Open shares one connection per TPM
// among all Stores of a process; close each Store when done.
package keystore

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"sync"
)

// Algorithm is the kind of key Generate makes.
type Algorithm string

// The algorithms every backend can make.
const (
	ECCP256 Algorithm = "ecc-p256" // the default: small, fast on every TPM
	RSA2048 Algorithm = "rsa-2048"
)

// ParseAlgorithm reads an algorithm name; "" is the default, ECC P-256.
func ParseAlgorithm(s string) (Algorithm, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "", "ecc-p256", "ecc", "p256", "ecdsa":
		return ECCP256, nil
	case "rsa-2048", "rsa", "rsa2048":
		return RSA2048, nil
	}
	return "", fmt.Errorf("keystore: unknown key algorithm %q (use ecc-p256 or rsa-2048)", s)
}

// Options are what a backend needs besides the URI.
type Options struct {
	// StateDir is the agent's state directory: a TPM key's blob and a
	// relative file: path live under it.
	StateDir string
	// Logger receives the backend's few lines (the file: warning, TPM
	// retries); nil means discard.
	Logger *slog.Logger
}

func (o Options) logger() *slog.Logger {
	if o.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return o.Logger
}

// Store is one key named by a URI, in the token that holds it.
type Store interface {
	// Signer returns the key; an error wrapping ErrNoKey when the token
	// has no such key, with words saying where it looked.
	Signer(ctx context.Context) (crypto.Signer, error)
	// Generate makes the key inside the token; an error wrapping
	// ErrKeyExists when there is one already (a key is never replaced
	// by accident: the device's identity hangs on it).
	Generate(ctx context.Context, alg Algorithm) (crypto.Signer, error)
	// Describe says in words where the key lives, for `dcagent key show`
	// and diagnostics: the token, its maker, and what a copy of the
	// state directory would or would not carry.
	Describe() string
	// Close releases the store's share of the token connection.
	Close() error
}

// Evidence is what a TPM gives enrollment to prove that the device key
// lives in it. Byte fields are TPM wire structures (TPM 2.0 Part 2).
type Evidence struct {
	// EKCert is the endorsement key certificate from the TPM's NV (DER),
	// signed by the TPM maker.
	EKCert []byte `json:"ek_cert"`
	// EKPublic is the endorsement key's TPMT_PUBLIC.
	EKPublic []byte `json:"ek_public"`
	// AKPublic is the attestation key's TPMT_PUBLIC: a restricted signing
	// key made in the endorsement hierarchy of the same TPM.
	AKPublic []byte `json:"ak_public"`
	// KeyPublic is the device key's TPMT_PUBLIC; its attributes say it
	// was made inside the TPM and cannot leave it.
	KeyPublic []byte `json:"key_public"`
	// CertifyInfo is the TPMS_ATTEST from TPM2_Certify of the device key
	// by the attestation key, and CertifySignature its TPMT_SIGNATURE.
	CertifyInfo      []byte `json:"certify_info"`
	CertifySignature []byte `json:"certify_signature"`
}

// Attester is a Store whose key can be attested by its token.
type Attester interface {
	// Attest certifies the device key with the TPM's attestation key;
	// qualifyingData is bound into the signed structure.
	Attest(ctx context.Context, qualifyingData []byte) (*Evidence, error)
	// ActivateCredential recovers the secret a verifier encrypted to the
	// endorsement key for the attestation key's name (TPM2_MakeCredential
	// done in software). Only the TPM holding both keys can.
	ActivateCredential(ctx context.Context, credentialBlob, encryptedSecret []byte) ([]byte, error)
}

// Counter is a monotonic counter kept by the token.
type Counter interface {
	// Increment adds one and returns the new value.
	Increment() (uint64, error)
	// Read returns the current value.
	Read() (uint64, error)
}

// CounterStore is a Store that also keeps monotonic counters.
type CounterStore interface {
	// Counter returns the counter at index, defining it when the token
	// has none there yet.
	Counter(index uint32) (Counter, error)
}

// Opener opens a Store for a URI of the scheme it was registered for.
type Opener func(ctx context.Context, uri string, opts Options) (Store, error)

var registry struct {
	sync.RWMutex
	openers map[string]Opener
}

// Register makes a backend available for its scheme (without the colon).
// It panics when the scheme is registered twice: two backends claiming
// one scheme is a build mistake.
func Register(scheme string, open Opener) {
	registry.Lock()
	defer registry.Unlock()
	if registry.openers == nil {
		registry.openers = map[string]Opener{}
	}
	if _, dup := registry.openers[scheme]; dup {
		panic("keystore: scheme registered twice: " + scheme)
	}
	registry.openers[scheme] = open
}

var missing = map[string]error{}

// RegisterMissing registers a scheme this build knows but cannot serve
// (pkcs11: without cgo): opening it fails with why, and Missing reports
// why without opening anything.
func RegisterMissing(scheme string, why error) {
	Register(scheme, func(ctx context.Context, uri string, opts Options) (Store, error) { return nil, why })
	registry.Lock()
	missing[scheme] = why
	registry.Unlock()
}

// Missing says why this build cannot serve a scheme: nil when it can,
// ErrUnknownScheme when it does not know it at all.
func Missing(scheme string) error {
	registry.RLock()
	defer registry.RUnlock()
	if why, ok := missing[scheme]; ok {
		return why
	}
	if _, ok := registry.openers[scheme]; !ok {
		return ErrUnknownScheme
	}
	return nil
}

// Schemes lists the registered schemes, sorted.
func Schemes() []string {
	registry.RLock()
	defer registry.RUnlock()
	var s []string
	for k := range registry.openers {
		s = append(s, k)
	}
	sort.Strings(s)
	return s
}

// Open opens the store the URI names.
func Open(ctx context.Context, uri string, opts Options) (Store, error) {
	scheme, _, ok := strings.Cut(uri, ":")
	if !ok || scheme == "" {
		return nil, fmt.Errorf("keystore: key URI %q has no scheme (want tpm:, pkcs11: or file:)", redact(uri))
	}
	scheme = strings.ToLower(scheme)
	registry.RLock()
	open := registry.openers[scheme]
	registry.RUnlock()
	if open == nil {
		return nil, fmt.Errorf("keystore: %w %q in key URI (this build has: %s)", ErrUnknownScheme, scheme, strings.Join(Schemes(), ", "))
	}
	return open(ctx, uri, opts)
}

// Fingerprint is the SHA-256 of the public key's SubjectPublicKeyInfo, in
// hex: the same for a key wherever it is shown (key show, enrollment logs,
// the backend's device record).
func Fingerprint(pub crypto.PublicKey) (string, error) {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return "", fmt.Errorf("keystore: public key: %w", err)
	}
	sum := sha256.Sum256(der)
	return "sha256:" + hex.EncodeToString(sum[:]), nil
}

// DescribePublic names a public key's type, e.g. "ECDSA P-256".
func DescribePublic(pub crypto.PublicKey) string {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		return "ECDSA " + k.Curve.Params().Name
	case *rsa.PublicKey:
		return fmt.Sprintf("RSA %d", k.N.BitLen())
	}
	return fmt.Sprintf("%T", pub)
}
