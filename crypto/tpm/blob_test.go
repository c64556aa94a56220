package tpm

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dcagent/dcagent/crypto/keystore"
	"github.com/dcagent/dcagent/internal/realparts"
)

// testBlob is a real blob made by swtpm (ECC P-256 key under the owner
// SRK), kept so the parser's tests and fuzz seeds need no TPM.
const testBlob = "testdata/device.tpmkey"

func TestBlobRoundTrip(t *testing.T) {
	data, err := os.ReadFile(testBlob)
	if err != nil {
		t.Fatal(err)
	}
	b, err := parseBlob(data)
	if err != nil {
		t.Fatal(err)
	}
	out, err := marshalBlob(b)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(out, data) {
		t.Fatalf("blob does not survive a round trip:\n%s\n%s", data, out)
	}
}

func TestParseBlobErrors(t *testing.T) {
	data, err := os.ReadFile(testBlob)
	if err != nil {
		t.Fatal(err)
	}
	good, err := parseBlob(data)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, in, want string
	}{
		{"not PEM", "hello", "no PEM block"},
		{"wrong PEM type", "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n", "PEM type"},
		{"not ASN.1", "-----BEGIN TSS2 PRIVATE KEY-----\nAAAA\n-----END TSS2 PRIVATE KEY-----\n", "ASN.1"},
	} {
		if _, err := parseBlob([]byte(tc.in)); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", tc.name, err, tc.want)
		}
	}
	bad := *good
	bad.private = nil
	out, _ := marshalBlob(&bad)
	if _, err := parseBlob(out); err == nil || !strings.Contains(err.Error(), "empty private") {
		t.Errorf("empty private part: %v", err)
	}
	bad = *good
	bad.pubRaw = bad.pubRaw[:len(bad.pubRaw)-3]
	out, _ = marshalBlob(&bad)
	if _, err := parseBlob(out); err == nil || !strings.Contains(err.Error(), "public part") {
		t.Errorf("cut public part: %v", err)
	}
}

// TestBlobFixtureFresh remakes the fixture with swtpm when
// DCAGENT_REGEN_TPM_BLOB=1, and otherwise checks that a blob made now has
// the fixture's shape (same template, so the same public-area length).
func TestBlobFixtureFresh(t *testing.T) {
	sw := realparts.SWTPMForTest(t)
	state := t.TempDir()
	s := openTestStore(t, sw.URI("device"), state)
	if _, err := s.Generate(context.Background(), keystore.ECCP256); err != nil {
		t.Fatal(err)
	}
	fresh, err := os.ReadFile(filepath.Join(state, "keys", "device.tpmkey"))
	if err != nil {
		t.Fatal(err)
	}
	if os.Getenv("DCAGENT_REGEN_TPM_BLOB") == "1" {
		if err := os.WriteFile(testBlob, fresh, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	fb, err := parseBlob(fresh)
	if err != nil {
		t.Fatal(err)
	}
	data, _ := os.ReadFile(testBlob)
	old, err := parseBlob(data)
	if err != nil {
		t.Fatal(err)
	}
	if len(fb.pubRaw) != len(old.pubRaw) || fb.public.ObjectAttributes != old.public.ObjectAttributes {
		t.Errorf("the fixture no longer matches the key template; regenerate with DCAGENT_REGEN_TPM_BLOB=1")
	}
}

func FuzzKeyBlob(f *testing.F) {
	data, err := os.ReadFile(testBlob)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(data)
	f.Add([]byte("-----BEGIN TSS2 PRIVATE KEY-----\nMAA=\n-----END TSS2 PRIVATE KEY-----\n"))
	f.Fuzz(func(t *testing.T, in []byte) {
		b, err := parseBlob(in)
		if err != nil {
			return
		}
		out, err := marshalBlob(b)
		if err != nil {
			t.Fatal(err)
		}
		b2, err := parseBlob(out)
		if err != nil {
			t.Fatalf("a parsed blob, written again, does not parse: %v", err)
		}
		if !bytes.Equal(b.pubRaw, b2.pubRaw) || !bytes.Equal(b.private, b2.private) {
			t.Fatal("round trip changed the blob")
		}
	})
}
