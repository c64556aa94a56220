package policy

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
)

// Signatures on what the device receives: policies (signed by the
// customer's policy manager) and diagnostic scripts and files (signed by
// the vendor). The signed message is the domain, a zero byte and the
// content, so a signature made for one purpose is never valid for another:
// a signed file cannot pass for a signed script, nor a policy for either.
// ECDSA keys sign the SHA-256 of that message (ASN.1 signature); Ed25519
// keys sign the message itself.
const (
	DomainPolicy = "dcagent-policy-v1"
	DomainScript = "dcagent-script-v1"
	DomainFile   = "dcagent-file-v1"
)

// ErrBadSignature is returned when a signature does not verify.
var ErrBadSignature = errors.New("signature does not verify")

func signedMessage(domain string, msg []byte) []byte {
	m := make([]byte, 0, len(domain)+1+len(msg))
	m = append(m, domain...)
	m = append(m, 0)
	return append(m, msg...)
}

// Sign signs msg for domain with signer (the backend's or the policy
// manager's key; tests use it too).
func Sign(signer crypto.Signer, domain string, msg []byte) ([]byte, error) {
	m := signedMessage(domain, msg)
	switch signer.Public().(type) {
	case ed25519.PublicKey:
		return signer.Sign(rand.Reader, m, crypto.Hash(0))
	case *ecdsa.PublicKey:
		sum := sha256.Sum256(m)
		return signer.Sign(rand.Reader, sum[:], crypto.SHA256)
	default:
		return nil, fmt.Errorf("policy: cannot sign with a %T key (use ECDSA or Ed25519)", signer.Public())
	}
}

// VerifySignature checks sig over msg for domain with pub.
func VerifySignature(pub crypto.PublicKey, domain string, msg, sig []byte) error {
	m := signedMessage(domain, msg)
	switch k := pub.(type) {
	case ed25519.PublicKey:
		if !ed25519.Verify(k, m, sig) {
			return ErrBadSignature
		}
	case *ecdsa.PublicKey:
		sum := sha256.Sum256(m)
		if !ecdsa.VerifyASN1(k, sum[:], sig) {
			return ErrBadSignature
		}
	case nil:
		return errors.New("no key to verify the signature with")
	default:
		return fmt.Errorf("cannot verify with a %T key", pub)
	}
	return nil
}

// LoadPublicKey reads a PEM public key (PUBLIC KEY, PKIX) or the key of a
// PEM certificate: ECDSA or Ed25519.
func LoadPublicKey(path string) (crypto.PublicKey, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("policy: signing key: %w", err)
	}
	return ParsePublicKey(path, data)
}

// ParsePublicKey is LoadPublicKey on data; name is used in errors.
func ParsePublicKey(name string, data []byte) (crypto.PublicKey, error) {
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, fmt.Errorf("policy: signing key %s holds no PEM block", name)
	}
	var pub crypto.PublicKey
	switch block.Type {
	case "PUBLIC KEY":
		k, err := x509.ParsePKIXPublicKey(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("policy: signing key %s: %w", name, err)
		}
		pub = k
	case "CERTIFICATE":
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("policy: signing key %s: %w", name, err)
		}
		pub = c.PublicKey
	default:
		return nil, fmt.Errorf("policy: signing key %s: PEM block %q is not PUBLIC KEY or CERTIFICATE", name, block.Type)
	}
	switch pub.(type) {
	case *ecdsa.PublicKey, ed25519.PublicKey:
		return pub, nil
	}
	return nil, fmt.Errorf("policy: signing key %s is a %T; use ECDSA or Ed25519", name, pub)
}

// MarshalPublicKey returns pub as a PEM PUBLIC KEY (for the simulator and
// tests that write key files).
func MarshalPublicKey(pub crypto.PublicKey) ([]byte, error) {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), nil
}
