// Package sealed wraps an event for the failover channels (the customer's
// mail server, FTPS), where it passes through hands that must not read or
// change it:
//
//   - Signed by the device: the device key signs the event, and the
//     device's certificate chain travels with it, so the backend knows
//     which device sent it as surely as over mutual TLS.
//   - Encrypted to the vendor: X25519 with a fresh ephemeral key per event,
//     HKDF-SHA256, AES-256-GCM (all from the standard library). Only the
//     holder of the vendor's private key can open it; the relay sees
//     random bytes. Signature and certificate are inside the encryption,
//     so the relay does not even learn which device sent it.
//
// Sealed events travel as text (Armor): PEM blocks of type
// "DCAGENT SEALED EVENT", 7-bit clean for any mail relay.
//
//	sealed    = magic(8) ephemeral-public(32) nonce(12) ciphertext
//	plaintext = CBOR {1: certificate chain (DER list), 2: event, 3: signature}
//	signature = device key over SHA-256(context || event)
package sealed

import (
	"bytes"
	"crypto"
	"crypto/aes"
	"crypto/cipher"
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"

	"github.com/fxamacker/cbor/v2"
)

const (
	magic     = "DCSEAL1\x00"
	hkdfInfo  = "dcagent sealed event v1"
	signCtx   = "dcagent failover event v1\x00"
	pemType   = "DCAGENT SEALED EVENT"
	headerLen = len(magic) + 32 + 12
	// MaxSealed bounds one sealed event.
	MaxSealed = 2 << 20
)

type plaintext struct {
	Chain     [][]byte `cbor:"1,keyasint"`
	Event     []byte   `cbor:"2,keyasint"`
	Signature []byte   `cbor:"3,keyasint"`
}

var decMode = func() cbor.DecMode {
	m, err := cbor.DecOptions{
		MaxArrayElements:  16,
		MaxNestedLevels:   4,
		MaxMapPairs:       16,
		IndefLength:       cbor.IndefLengthForbidden,
		TagsMd:            cbor.TagsForbidden,
		DupMapKey:         cbor.DupMapKeyEnforcedAPF,
		ExtraReturnErrors: cbor.ExtraDecErrorUnknownField,
	}.DecMode()
	if err != nil {
		panic(err)
	}
	return m
}()

// Seal signs event with the device certificate's key and encrypts it to
// the vendor's public key.
func Seal(vendor *ecdh.PublicKey, device *tls.Certificate, event []byte) ([]byte, error) {
	if vendor == nil || vendor.Curve() != ecdh.X25519() {
		return nil, errors.New("sealed: vendor key must be X25519")
	}
	if device == nil || len(device.Certificate) == 0 {
		return nil, errors.New("sealed: no device certificate")
	}
	signer, ok := device.PrivateKey.(crypto.Signer)
	if !ok {
		return nil, errors.New("sealed: device key cannot sign")
	}
	digest := signDigest(event)
	var opts crypto.SignerOpts = crypto.SHA256
	sig, err := signer.Sign(rand.Reader, digest, opts)
	if err != nil {
		return nil, fmt.Errorf("sealed: sign with device key: %w", err)
	}
	pt, err := cbor.Marshal(plaintext{Chain: device.Certificate, Event: event, Signature: sig})
	if err != nil {
		return nil, err
	}
	eph, err := ecdh.X25519().GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	aead, err := deriveAEAD(eph, vendor, eph.PublicKey())
	if err != nil {
		return nil, err
	}
	out := make([]byte, 0, headerLen+len(pt)+aead.Overhead())
	out = append(out, magic...)
	out = append(out, eph.PublicKey().Bytes()...)
	nonce := make([]byte, 12)
	if _, err := rand.Read(nonce); err != nil {
		return nil, err
	}
	out = append(out, nonce...)
	return aead.Seal(out, nonce, pt, out[:len(magic)+32]), nil
}

func deriveAEAD(priv *ecdh.PrivateKey, peer *ecdh.PublicKey, ephPub *ecdh.PublicKey) (cipher.AEAD, error) {
	shared, err := priv.ECDH(peer)
	if err != nil {
		return nil, fmt.Errorf("sealed: key agreement: %w", err)
	}
	// Salt binds both public keys, so a key cannot be reused for another
	// recipient.
	var recipient []byte
	if priv.PublicKey().Equal(ephPub) {
		recipient = peer.Bytes()
	} else {
		recipient = priv.PublicKey().Bytes()
	}
	salt := append(append([]byte(nil), ephPub.Bytes()...), recipient...)
	key, err := hkdf.Key(sha256.New, shared, salt, hkdfInfo, 32)
	if err != nil {
		return nil, err
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(block)
}

func signDigest(event []byte) []byte {
	h := sha256.New()
	h.Write([]byte(signCtx))
	h.Write(event)
	return h.Sum(nil)
}

// Opener opens sealed events at the backend.
type Opener struct {
	Key *ecdh.PrivateKey
	// DeviceCAs verifies the device certificate chain that comes inside.
	DeviceCAs *x509.CertPool
}

// Opened is a sealed event after decryption and verification.
type Opened struct {
	Event []byte
	// Device is the verified device certificate; its CommonName is the
	// system ID the event must carry.
	Device *x509.Certificate
}

// Open decrypts and verifies one sealed event.
func (o *Opener) Open(sealed []byte) (*Opened, error) {
	if len(sealed) > MaxSealed {
		return nil, fmt.Errorf("sealed: %d bytes, more than %d", len(sealed), MaxSealed)
	}
	if len(sealed) < headerLen+16 || string(sealed[:len(magic)]) != magic {
		return nil, errors.New("sealed: not a sealed event (bad magic or too short)")
	}
	eph, err := ecdh.X25519().NewPublicKey(sealed[len(magic) : len(magic)+32])
	if err != nil {
		return nil, fmt.Errorf("sealed: ephemeral key: %w", err)
	}
	aead, err := deriveAEAD(o.Key, eph, eph)
	if err != nil {
		return nil, err
	}
	nonce := sealed[len(magic)+32 : headerLen]
	pt, err := aead.Open(nil, nonce, sealed[headerLen:], sealed[:len(magic)+32])
	if err != nil {
		return nil, errors.New("sealed: cannot decrypt: not for this vendor key, or altered on the way")
	}
	var p plaintext
	if err := decMode.Unmarshal(pt, &p); err != nil {
		return nil, fmt.Errorf("sealed: contents: %w", err)
	}
	if len(p.Chain) == 0 {
		return nil, errors.New("sealed: no device certificate inside")
	}
	leaf, err := x509.ParseCertificate(p.Chain[0])
	if err != nil {
		return nil, fmt.Errorf("sealed: device certificate: %w", err)
	}
	inter := x509.NewCertPool()
	for _, der := range p.Chain[1:] {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			return nil, fmt.Errorf("sealed: intermediate certificate: %w", err)
		}
		inter.AddCert(c)
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: o.DeviceCAs, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		return nil, fmt.Errorf("sealed: device certificate %q not trusted: %w", leaf.Subject.CommonName, err)
	}
	digest := signDigest(p.Event)
	switch pub := leaf.PublicKey.(type) {
	case *ecdsa.PublicKey:
		if !ecdsa.VerifyASN1(pub, digest, p.Signature) {
			return nil, fmt.Errorf("sealed: signature of device %q does not verify", leaf.Subject.CommonName)
		}
	case *rsa.PublicKey:
		if err := rsa.VerifyPKCS1v15(pub, crypto.SHA256, digest, p.Signature); err != nil {
			return nil, fmt.Errorf("sealed: signature of device %q does not verify", leaf.Subject.CommonName)
		}
	default:
		return nil, fmt.Errorf("sealed: device key type %T not supported", pub)
	}
	return &Opened{Event: p.Event, Device: leaf}, nil
}

// Armor turns sealed events into text: one PEM block each.
func Armor(sealed [][]byte) []byte {
	var b bytes.Buffer
	for _, s := range sealed {
		_ = pem.Encode(&b, &pem.Block{Type: pemType, Bytes: s})
	}
	return b.Bytes()
}

// Unarmor finds every sealed-event block in text (a mail body or an FTPS
// file), ignoring whatever else is around them. It fails only when there
// is none at all.
func Unarmor(text []byte) ([][]byte, error) {
	text = bytes.ReplaceAll(text, []byte("\r\n"), []byte("\n"))
	var out [][]byte
	for len(text) > 0 {
		var blk *pem.Block
		blk, text = pem.Decode(text)
		if blk == nil {
			break
		}
		if blk.Type == pemType {
			out = append(out, blk.Bytes)
		}
	}
	if len(out) == 0 {
		return nil, errors.New("sealed: no " + pemType + " block in the message")
	}
	return out, nil
}

// LoadVendorKey reads the vendor's X25519 public key from a PEM file
// ("PUBLIC KEY", PKIX).
func LoadVendorKey(path string) (*ecdh.PublicKey, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("sealed: vendor key: %w", err)
	}
	blk, _ := pem.Decode(data)
	if blk == nil || blk.Type != "PUBLIC KEY" {
		return nil, fmt.Errorf("sealed: vendor key %s: no PEM PUBLIC KEY block", path)
	}
	k, err := x509.ParsePKIXPublicKey(blk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("sealed: vendor key %s: %w", path, err)
	}
	pub, ok := k.(*ecdh.PublicKey)
	if !ok || pub.Curve() != ecdh.X25519() {
		return nil, fmt.Errorf("sealed: vendor key %s is %T, want X25519", path, k)
	}
	return pub, nil
}

// MarshalVendorKey encodes a vendor public key as PEM (for the simulator
// and tests that make one).
func MarshalVendorKey(pub *ecdh.PublicKey) ([]byte, error) {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), nil
}
