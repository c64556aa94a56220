package tpm

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"math/big"
	"os"
	"testing"

	"github.com/dcagent/dcagent/crypto/keystore"
	"github.com/dcagent/dcagent/internal/realparts"
	"github.com/google/go-tpm/tpm2"
)

// TestAttestAndActivate runs the device side of enrollment's TPM proof
// on a swtpm manufactured with an EK certificate, and checks the evidence
// the way a verifier would: the EK certificate chains to the maker's
// root, the AK signed the certify structure, the structure names the
// device key, and only this TPM can activate a credential made for its
// EK and AK.
func TestAttestAndActivate(t *testing.T) {
	mfr := t.TempDir()
	sw := realparts.SWTPMWithEKForTest(t, mfr)
	s := openTestStore(t, sw.URI("device"), t.TempDir())
	k, err := s.Generate(context.Background(), keystore.ECCP256)
	if err != nil {
		t.Fatal(err)
	}
	qd := sha256.Sum256([]byte("csr"))
	ev, err := s.Attest(context.Background(), qd[:])
	if err != nil {
		t.Fatal(err)
	}

	// The EK certificate chains to the local CA standing in for the maker.
	ekCert, err := x509.ParseCertificate(ev.EKCert)
	if err != nil {
		t.Fatalf("EK certificate: %v", err)
	}
	rootsFile, err := sw.ManufacturerRootsFile()
	if err != nil {
		t.Fatal(err)
	}
	roots, inter := x509.NewCertPool(), x509.NewCertPool()
	data, _ := os.ReadFile(rootsFile)
	for block, rest := pem.Decode(data); block != nil; block, rest = pem.Decode(rest) {
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Equal(c.RawIssuer, c.RawSubject) {
			roots.AddCert(c)
		} else {
			inter.AddCert(c)
		}
	}
	// EK certificates carry the TCG's own extended key usage and a
	// critical subject alternative name of TPM attributes; a verifier
	// accepts both explicitly (see sim/ca).
	ekCert.UnhandledCriticalExtensions = nil
	if _, err := ekCert.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
		t.Fatalf("EK certificate does not chain to the maker's root: %v", err)
	}

	// The EK public area holds the certified key.
	ekPub, err := tpm2.Unmarshal[tpm2.TPMTPublic](ev.EKPublic)
	if err != nil {
		t.Fatal(err)
	}
	ekKey, err := tpm2.Pub(*ekPub)
	if err != nil {
		t.Fatal(err)
	}
	if !ekKey.(interface{ Equal(crypto.PublicKey) bool }).Equal(ekCert.PublicKey) {
		t.Fatal("EK public area does not match the EK certificate")
	}

	// The AK signed the certify structure, which names the device key.
	akPub, err := tpm2.Unmarshal[tpm2.TPMTPublic](ev.AKPublic)
	if err != nil {
		t.Fatal(err)
	}
	akKey, err := tpm2.Pub(*akPub)
	if err != nil {
		t.Fatal(err)
	}
	sig, err := tpm2.Unmarshal[tpm2.TPMTSignature](ev.CertifySignature)
	if err != nil {
		t.Fatal(err)
	}
	e, err := sig.Signature.ECDSA()
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(ev.CertifyInfo)
	if !ecdsa.Verify(akKey.(*ecdsa.PublicKey), sum[:], new(big.Int).SetBytes(e.SignatureR.Buffer), new(big.Int).SetBytes(e.SignatureS.Buffer)) {
		t.Fatal("certify signature does not verify with the AK")
	}
	attest, err := tpm2.Unmarshal[tpm2.TPMSAttest](ev.CertifyInfo)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(attest.ExtraData.Buffer, qd[:]) {
		t.Error("qualifying data not bound into the attestation")
	}
	info, err := attest.Attested.Certify()
	if err != nil {
		t.Fatal(err)
	}
	keyPub, err := tpm2.Unmarshal[tpm2.TPMTPublic](ev.KeyPublic)
	if err != nil {
		t.Fatal(err)
	}
	keyName, err := tpm2.ObjectName(keyPub)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(info.Name.Buffer, keyName.Buffer) {
		t.Fatal("the certified name is not the device key's")
	}
	kp, _ := tpm2.Pub(*keyPub)
	if !kp.(*ecdsa.PublicKey).Equal(k.Public()) {
		t.Fatal("the certified key is not the signer's key")
	}

	// Credential activation: made in software for this EK and AK name.
	akName, err := tpm2.ObjectName(akPub)
	if err != nil {
		t.Fatal(err)
	}
	encKey, err := tpm2.ImportEncapsulationKey(ekPub)
	if err != nil {
		t.Fatal(err)
	}
	secret := []byte("0123456789abcdef0123456789abcdef")
	blob, encSecret, err := tpm2.CreateCredential(rand.Reader, encKey, akName.Buffer, secret)
	if err != nil {
		t.Fatal(err)
	}
	got, err := s.ActivateCredential(context.Background(), blob, encSecret)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, secret) {
		t.Fatalf("activated %x, want %x", got, secret)
	}

	// Another TPM (same maker) cannot recover it: it lacks this EK.
	other := realparts.SWTPMWithEKForTest(t, mfr)
	s2 := openTestStore(t, other.URI("device"), t.TempDir())
	if _, err := s2.ActivateCredential(context.Background(), blob, encSecret); err == nil {
		t.Fatal("another TPM activated this TPM's credential")
	}
}

// TestAttestWithoutEKCert: a TPM with no EK certificate cannot attest,
// and says so.
func TestAttestWithoutEKCert(t *testing.T) {
	sw := realparts.SWTPMForTest(t)
	s := openTestStore(t, sw.URI("device"), t.TempDir())
	if _, err := s.Attest(context.Background(), nil); err == nil {
		t.Fatal("Attest before the key was opened succeeded")
	}
	if _, err := s.Generate(context.Background(), keystore.ECCP256); err != nil {
		t.Fatal(err)
	}
	_, err := s.Attest(context.Background(), []byte("q"))
	if !errors.Is(err, ErrNoEKCert) {
		t.Fatalf("Attest on a TPM without EK certificate: %v", err)
	}
}
