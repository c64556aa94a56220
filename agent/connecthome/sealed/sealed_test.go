package sealed

import (
	"bytes"
	"crypto/ecdh"
	"crypto/rand"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dcagent/dcagent/internal/testpki"
)

func setup(t testing.TB) (*ecdh.PrivateKey, *testpki.CA) {
	vendor, err := ecdh.X25519().GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return vendor, testpki.NewCA(t, "vendor CA")
}

func TestSealOpen(t *testing.T) {
	vendor, ca := setup(t)
	dev := ca.Device(t, "SYS-1")
	msg := []byte("the event bytes")
	s, err := Seal(vendor.PublicKey(), &dev, msg)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(s, msg) || bytes.Contains(s, []byte("SYS-1")) {
		t.Fatal("sealed event shows its contents or the device")
	}
	o := &Opener{Key: vendor, DeviceCAs: ca.Pool}
	got, err := o.Open(s)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got.Event, msg) || got.Device.Subject.CommonName != "SYS-1" {
		t.Fatalf("opened %q from %q", got.Event, got.Device.Subject.CommonName)
	}
	// Armor round trip, with mail noise around it and CRLF line ends.
	text := "Hello relay\r\n\r\n" + strings.ReplaceAll(string(Armor([][]byte{s, s})), "\n", "\r\n") + "-- \r\nsig\r\n"
	blocks, err := Unarmor([]byte(text))
	if err != nil || len(blocks) != 2 || !bytes.Equal(blocks[0], s) {
		t.Fatalf("unarmor: %d blocks, %v", len(blocks), err)
	}
}

func TestOpenRefuses(t *testing.T) {
	vendor, ca := setup(t)
	other, _ := ecdh.X25519().GenerateKey(rand.Reader)
	dev := ca.Device(t, "SYS-1")
	s, _ := Seal(vendor.PublicKey(), &dev, []byte("e"))

	if _, err := (&Opener{Key: other, DeviceCAs: ca.Pool}).Open(s); err == nil {
		t.Error("opened with the wrong vendor key")
	}
	flipped := append([]byte(nil), s...)
	flipped[len(flipped)-5] ^= 1
	if _, err := (&Opener{Key: vendor, DeviceCAs: ca.Pool}).Open(flipped); err == nil {
		t.Error("opened an altered event")
	}
	rogueCA := testpki.NewCA(t, "rogue")
	rogue := rogueCA.Device(t, "SYS-1")
	rs, _ := Seal(vendor.PublicKey(), &rogue, []byte("forged"))
	if _, err := (&Opener{Key: vendor, DeviceCAs: ca.Pool}).Open(rs); err == nil || !strings.Contains(err.Error(), "not trusted") {
		t.Errorf("device certificate from another CA: %v", err)
	}
	if _, err := Unarmor([]byte("no blocks here")); err == nil {
		t.Error("unarmor of plain text")
	}
}

func TestVendorKeyFile(t *testing.T) {
	vendor, _ := setup(t)
	pemData, err := MarshalVendorKey(vendor.PublicKey())
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "vendor.pem")
	os.WriteFile(p, pemData, 0o644)
	got, err := LoadVendorKey(p)
	if err != nil || !got.Equal(vendor.PublicKey()) {
		t.Fatalf("%v", err)
	}
	os.WriteFile(p, []byte("junk"), 0o644)
	if _, err := LoadVendorKey(p); err == nil {
		t.Fatal("junk accepted")
	}
}

func FuzzOpen(f *testing.F) {
	vendor, ca := setup(f)
	dev := ca.Device(f, "SYS-F")
	s, _ := Seal(vendor.PublicKey(), &dev, []byte("fuzz"))
	f.Add(s)
	f.Add(Armor([][]byte{s}))
	o := &Opener{Key: vendor, DeviceCAs: ca.Pool}
	f.Fuzz(func(t *testing.T, data []byte) {
		if blocks, err := Unarmor(data); err == nil {
			for _, b := range blocks {
				_, _ = o.Open(b)
			}
		}
		_, _ = o.Open(data)
	})
}
