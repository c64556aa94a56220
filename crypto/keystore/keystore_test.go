package keystore

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestOpenUnknownScheme(t *testing.T) {
	_, err := Open(context.Background(), "vault:secret/key", Options{})
	if !errors.Is(err, ErrUnknownScheme) || !strings.Contains(err.Error(), "file") {
		t.Fatalf("unknown scheme: %v", err)
	}
	if _, err := Open(context.Background(), "no-scheme", Options{}); err == nil {
		t.Fatal("a URI without scheme was accepted")
	}
}

func TestParseAlgorithm(t *testing.T) {
	for in, want := range map[string]Algorithm{"": ECCP256, "ecc-p256": ECCP256, "RSA-2048": RSA2048, "rsa": RSA2048} {
		if got, err := ParseAlgorithm(in); err != nil || got != want {
			t.Errorf("%q: %v, %v", in, got, err)
		}
	}
	if _, err := ParseAlgorithm("ed25519"); err == nil {
		t.Error("ed25519 accepted")
	}
}

// TestFileStore: generate, reopen, sign; refuse to overwrite; warn at
// every open.
func TestFileStore(t *testing.T) {
	dir := t.TempDir()
	var logs bytes.Buffer
	opts := Options{StateDir: dir, Logger: slog.New(slog.NewTextHandler(&logs, nil))}
	s, err := Open(context.Background(), "file:dev.pem", opts)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if !strings.Contains(logs.String(), "development only") {
		t.Errorf("no warning at open: %q", logs.String())
	}
	if _, err := s.Signer(context.Background()); !errors.Is(err, ErrNoKey) {
		t.Fatalf("Signer before Generate: %v", err)
	}
	for _, alg := range []Algorithm{ECCP256, RSA2048} {
		name := "file:" + string(alg) + ".pem"
		s, err := Open(context.Background(), name, opts)
		if err != nil {
			t.Fatal(err)
		}
		k, err := s.Generate(context.Background(), alg)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.Generate(context.Background(), alg); !errors.Is(err, ErrKeyExists) {
			t.Errorf("second Generate: %v", err)
		}
		k2, err := s.Signer(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if !k.Public().(interface{ Equal(crypto.PublicKey) bool }).Equal(k2.Public()) {
			t.Error("reopened key differs")
		}
		d := sha256.Sum256([]byte("x"))
		sig, err := k2.Sign(rand.Reader, d[:], crypto.SHA256)
		if err != nil {
			t.Fatal(err)
		}
		switch pub := k2.Public().(type) {
		case *ecdsa.PublicKey:
			if !ecdsa.VerifyASN1(pub, d[:], sig) {
				t.Error("bad ECDSA signature")
			}
		case *rsa.PublicKey:
			if rsa.VerifyPKCS1v15(pub, crypto.SHA256, d[:], sig) != nil {
				t.Error("bad RSA signature")
			}
		}
		fi, err := os.Stat(filepath.Join(dir, string(alg)+".pem"))
		if err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("key file mode: %v, %v", fi.Mode().Perm(), err)
		}
		if !strings.Contains(s.Describe(), "development only") {
			t.Errorf("Describe = %q", s.Describe())
		}
		s.Close()
	}
	if n := strings.Count(logs.String(), "development only"); n != 3 {
		t.Errorf("%d warnings for 3 opens", n)
	}
}

func TestFileStoreBadFile(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "k.pem")
	if err := os.WriteFile(p, []byte("not a key"), 0o600); err != nil {
		t.Fatal(err)
	}
	s, err := Open(context.Background(), "file:"+p, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Signer(context.Background()); err == nil || !strings.Contains(err.Error(), p) {
		t.Fatalf("bad key file: %v", err)
	}
}

func TestFingerprint(t *testing.T) {
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	fp, err := Fingerprint(k.Public())
	if err != nil || !strings.HasPrefix(fp, "sha256:") || len(fp) != 7+64 {
		t.Fatalf("Fingerprint = %q, %v", fp, err)
	}
	if DescribePublic(k.Public()) != "ECDSA P-256" {
		t.Errorf("DescribePublic = %q", DescribePublic(k.Public()))
	}
}

func TestWriteFileAtomicReplaces(t *testing.T) {
	p := filepath.Join(t.TempDir(), "sub", "f")
	if err := WriteFileAtomic(p, []byte("one"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := WriteFileAtomic(p, []byte("two"), 0o644); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(p)
	if string(b) != "two" {
		t.Fatalf("got %q", b)
	}
	entries, _ := os.ReadDir(filepath.Dir(p))
	if len(entries) != 1 {
		t.Errorf("temporary files left: %v", entries)
	}
}

func BenchmarkSignFile(b *testing.B) {
	s, err := Open(context.Background(), "file:bench.pem", Options{StateDir: b.TempDir()})
	if err != nil {
		b.Fatal(err)
	}
	k, err := s.Generate(context.Background(), ECCP256)
	if err != nil {
		b.Fatal(err)
	}
	d := sha256.Sum256([]byte("bench"))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := k.Sign(rand.Reader, d[:], crypto.SHA256); err != nil {
			b.Fatal(err)
		}
	}
}
