package ca

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/dcagent/dcagent/crypto/enroll"
	"github.com/dcagent/dcagent/crypto/keystore"
	"github.com/dcagent/dcagent/crypto/tpm"
	"github.com/dcagent/dcagent/internal/realparts"
)

// The attestation fixture is real evidence from swtpm (an ECC P-256
// device key certified by the AK, RSA EK and its certificate from the
// swtpm local CA), with the CSR it is bound to and the maker's roots.
// Regenerate with DCAGENT_REGEN_ATTEST=1 go test -run TestAttestFixture.
const attestFixture = "testdata/attest"

type fixture struct {
	ev  keystore.Evidence
	csr *x509.CertificateRequest
	der []byte
	ca  *CA
}

func loadFixture(t testing.TB) *fixture {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(attestFixture, "evidence.json"))
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{}
	if err := json.Unmarshal(data, &f.ev); err != nil {
		t.Fatal(err)
	}
	if f.der, err = os.ReadFile(filepath.Join(attestFixture, "csr.der")); err != nil {
		t.Fatal(err)
	}
	if f.csr, err = x509.ParseCertificateRequest(f.der); err != nil {
		t.Fatal(err)
	}
	if f.ca, err = Open(Config{Dir: t.TempDir(), TPMRootsFile: filepath.Join(attestFixture, "roots.pem")}); err != nil {
		t.Fatal(err)
	}
	return f
}

func TestAttestFixture(t *testing.T) {
	if os.Getenv("DCAGENT_REGEN_ATTEST") == "1" {
		sw := realparts.SWTPMWithEKForTest(t, "")
		s, err := tpm.OpenStore(context.Background(), sw.URI("device"), keystore.Options{StateDir: t.TempDir()})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		k, err := s.Generate(context.Background(), keystore.ECCP256)
		if err != nil {
			t.Fatal(err)
		}
		csr, _ := enroll.CreateCSR(enroll.Device{SystemID: "SYS-FIXTURE", Signer: k})
		ev, err := s.Attest(context.Background(), enroll.QualifyingData(csr))
		if err != nil {
			t.Fatal(err)
		}
		roots, _ := sw.ManufacturerRootsFile()
		rb, _ := os.ReadFile(roots)
		data, _ := json.MarshalIndent(ev, "", "  ")
		os.MkdirAll(attestFixture, 0o755)
		os.WriteFile(filepath.Join(attestFixture, "evidence.json"), data, 0o644)
		os.WriteFile(filepath.Join(attestFixture, "csr.der"), csr, 0o644)
		os.WriteFile(filepath.Join(attestFixture, "roots.pem"), rb, 0o644)
	}
	f := loadFixture(t)
	if _, err := f.ca.verifyEvidence(&f.ev, f.csr.PublicKey, enroll.QualifyingData(f.der)); err != nil {
		t.Fatalf("the fixture does not verify: %v", err)
	}
	// Each part changed by one bit is refused.
	for name, field := range map[string]*[]byte{"EK public": &f.ev.EKPublic, "AK public": &f.ev.AKPublic, "key public": &f.ev.KeyPublic, "certify info": &f.ev.CertifyInfo, "signature": &f.ev.CertifySignature, "EK certificate": &f.ev.EKCert} {
		orig := *field
		bad := append([]byte(nil), orig...)
		bad[len(bad)-5] ^= 1
		*field = bad
		if _, err := f.ca.verifyEvidence(&f.ev, f.csr.PublicKey, enroll.QualifyingData(f.der)); err == nil {
			t.Errorf("%s with a bit flipped verified", name)
		}
		*field = orig
	}
}

// FuzzVerifyEvidence feeds the verifier TPM structures it did not expect:
// it must refuse them, never panic, and never accept a changed one.
func FuzzVerifyEvidence(f *testing.F) {
	fx := loadFixture(f)
	f.Add(fx.ev.EKPublic, fx.ev.AKPublic, fx.ev.KeyPublic, fx.ev.CertifyInfo, fx.ev.CertifySignature)
	f.Fuzz(func(t *testing.T, ekPub, akPub, keyPub, info, sig []byte) {
		ev := fx.ev
		ev.EKPublic, ev.AKPublic, ev.KeyPublic, ev.CertifyInfo, ev.CertifySignature = ekPub, akPub, keyPub, info, sig
		_, err := fx.ca.verifyEvidence(&ev, fx.csr.PublicKey, enroll.QualifyingData(fx.der))
		if err == nil && (string(akPub) != string(fx.ev.AKPublic) || string(info) != string(fx.ev.CertifyInfo) || string(keyPub) != string(fx.ev.KeyPublic)) {
			t.Fatal("changed evidence verified")
		}
	})
}
