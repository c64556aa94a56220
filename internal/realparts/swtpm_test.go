package realparts

import (
	"bytes"
	"context"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestSWTPM(t *testing.T) {
	s := SWTPMForTest(t)
	if err := sendRaw(s.Addr(), tpm2GetRandom, 5*time.Second); err != nil {
		t.Fatalf("TPM does not answer: %v", err)
	}
	if !strings.HasPrefix(s.URI("k"), "tpm://127.0.0.1:") || !strings.HasSuffix(s.URI("k"), "?key=k") {
		t.Errorf("URI = %q", s.URI("k"))
	}
	addr := s.Addr()
	if err := s.Restart(context.Background()); err != nil {
		t.Fatal(err)
	}
	if s.Addr() != addr {
		t.Logf("restarted on %s instead of %s (port taken meanwhile)", s.Addr(), addr)
	}
	if err := sendRaw(s.Addr(), tpm2GetRandom, 5*time.Second); err != nil {
		t.Fatalf("TPM does not answer after restart: %v", err)
	}
	if _, err := s.ManufacturerRootsFile(); err == nil {
		t.Error("roots of a TPM without EK certificate")
	}
	if err := s.Stop(); err != nil {
		t.Fatalf("orderly stop: %v", err)
	}
	if err := s.Stop(); err != nil {
		t.Fatalf("second stop: %v", err)
	}
	if err := sendRaw(addr, tpm2GetRandom, time.Second); err == nil {
		t.Fatal("the TPM still answers after Stop")
	}
}

func TestSWTPMWithEK(t *testing.T) {
	mfr := t.TempDir()
	s := SWTPMWithEKForTest(t, mfr)
	p, err := s.ManufacturerRootsFile()
	if err != nil {
		t.Fatal(err)
	}
	data, _ := os.ReadFile(p)
	n := 0
	for b, rest := pem.Decode(data); b != nil; b, rest = pem.Decode(rest) {
		n++
	}
	if n != 2 {
		t.Fatalf("%d certificates in the maker's roots, want root and issuer", n)
	}
	// A second TPM of the same maker shares the CA.
	s2 := SWTPMWithEKForTest(t, mfr)
	p2, _ := s2.ManufacturerRootsFile()
	data2, _ := os.ReadFile(p2)
	if !bytes.Equal(data, data2) {
		t.Error("two TPMs of one maker have different roots")
	}
}

func TestSWTPMStartFails(t *testing.T) {
	file := filepath.Join(t.TempDir(), "file")
	os.WriteFile(file, nil, 0o600)
	if _, err := StartSWTPM(context.Background(), filepath.Join(file, "sub"), SWTPMOptions{}); err == nil {
		t.Fatal("started with a state dir under a file")
	}
}

func TestSoftHSMToken(t *testing.T) {
	tok := SoftHSMForTest(t, "my token")
	if os.Getenv("SOFTHSM2_CONF") != tok.HSM.ConfPath {
		t.Error("SOFTHSM2_CONF not set")
	}
	fi, err := os.Stat(tok.PINFile)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("PIN file: %v %v", fi, err)
	}
	uri := tok.URI("device key")
	if !strings.Contains(uri, "token=my%20token;object=device%20key?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=file:/") || strings.Contains(uri, tok.PIN) {
		t.Errorf("URI = %q", uri)
	}
	if _, err := tok.HSM.InitToken(context.Background(), "second", "5678"); err != nil {
		t.Fatalf("a second token: %v", err)
	}
}
