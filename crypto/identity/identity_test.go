package identity

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dcagent/dcagent/agent/config"
	"github.com/dcagent/dcagent/crypto/keystore"
	_ "github.com/dcagent/dcagent/crypto/keystore/all"
	"github.com/dcagent/dcagent/internal/testpki"
)

// device makes a state directory with a file key and the vendor CA, and
// returns its configuration and key. (The end-to-end tests with the
// reference backend, swtpm and SoftHSM are in sim/ca.)
func device(t *testing.T, ca *testpki.CA) (*config.Config, crypto.Signer) {
	t.Helper()
	state := t.TempDir()
	cfg := config.Default()
	cfg.Path = "test.conf"
	cfg.Device.SystemID = "SYS-1"
	cfg.Device.StateDir = state
	cfg.Backend.URL = "https://127.0.0.1:1"
	cfg.Backend.CAFile = ca.WriteCAFile(t, state)
	cfg.Identity.KeyURI = "file:k.pem"
	s, err := keystore.Open(context.Background(), cfg.Identity.KeyURI, keystore.Options{StateDir: state})
	if err != nil {
		t.Fatal(err)
	}
	k, err := s.Generate(context.Background(), keystore.ECCP256)
	if err != nil {
		t.Fatal(err)
	}
	return cfg, k
}

func issue(t *testing.T, ca *testpki.CA, pub crypto.PublicKey, cn string, nb, na time.Time) *x509.Certificate {
	t.Helper()
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: cn},
		NotBefore: nb, NotAfter: na,
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, pub, ca.Key)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := x509.ParseCertificate(der)
	return c
}

func TestLoad(t *testing.T) {
	ca := testpki.NewCA(t, "vendor")
	cfg, k := device(t, ca)
	if _, err := Load(context.Background(), cfg, Options{}); !errors.Is(err, ErrNotEnrolled) {
		t.Fatalf("before enrollment: %v", err)
	}
	now := time.Now()
	leaf := issue(t, ca, k.Public(), "SYS-1", now.Add(-time.Hour), now.Add(time.Hour))
	if err := SaveChain(cfg.Device.StateDir, []*x509.Certificate{leaf, ca.Cert}); err != nil {
		t.Fatal(err)
	}
	id, err := Load(context.Background(), cfg, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer id.Close()
	c := id.TLSCertificate()
	if c.Leaf.SerialNumber.Cmp(leaf.SerialNumber) != 0 || c.PrivateKey != id.Signer() || len(c.Certificate) != 2 {
		t.Fatalf("TLSCertificate %+v", c)
	}
	if id.SystemID() != "SYS-1" || !id.NotAfter().Equal(leaf.NotAfter) || id.Roots() == nil {
		t.Error("accessors")
	}
	st := id.Status()
	if st.SystemID != "SYS-1" || st.LastError != "" || !strings.Contains(st.KeyStore, "development only") {
		t.Errorf("Status %+v", st)
	}
	if want := RenewTime(leaf, 2.0/3.0); !st.RenewAt.Equal(want) {
		t.Errorf("RenewAt %v, want %v", st.RenewAt, want)
	}
}

func TestLoadRefusals(t *testing.T) {
	ca := testpki.NewCA(t, "vendor")
	other := testpki.NewCA(t, "other")
	now := time.Now()
	for name, tc := range map[string]struct {
		leaf func(t *testing.T, k crypto.Signer) *x509.Certificate
		want string
	}{
		"another system ID": {func(t *testing.T, k crypto.Signer) *x509.Certificate {
			return issue(t, ca, k.Public(), "SYS-2", now.Add(-time.Hour), now.Add(time.Hour))
		}, "system ID \"SYS-2\""},
		"another CA": {func(t *testing.T, k crypto.Signer) *x509.Certificate {
			return issue(t, other, k.Public(), "SYS-1", now.Add(-time.Hour), now.Add(time.Hour))
		}, "pinned vendor CA"},
		"another key": {func(t *testing.T, k crypto.Signer) *x509.Certificate {
			dev := ca.Device(t, "SYS-1")
			return dev.Leaf
		}, "copied from another device"},
	} {
		t.Run(name, func(t *testing.T) {
			cfg, k := device(t, ca)
			if err := SaveChain(cfg.Device.StateDir, []*x509.Certificate{tc.leaf(t, k)}); err != nil {
				t.Fatal(err)
			}
			if _, err := Load(context.Background(), cfg, Options{}); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("%v, want %q", err, tc.want)
			}
		})
	}
	cfg, _ := device(t, ca)
	cfg.Identity.KeyURI = ""
	if _, err := Load(context.Background(), cfg, Options{}); err == nil || !strings.Contains(err.Error(), "key_uri") {
		t.Errorf("no key URI: %v", err)
	}
	cfg, _ = device(t, ca)
	cfg.Backend.CAFile = filepath.Join(t.TempDir(), "none.pem")
	if _, err := Load(context.Background(), cfg, Options{}); err == nil || !strings.Contains(err.Error(), "ca_file") {
		t.Errorf("no CA file: %v", err)
	}
	// A certificate in the state directory, but no key: copied.
	cfg, _ = device(t, ca)
	dev := ca.Device(t, "SYS-1")
	SaveChain(cfg.Device.StateDir, []*x509.Certificate{dev.Leaf})
	os.Remove(filepath.Join(cfg.Device.StateDir, "k.pem"))
	if _, err := Load(context.Background(), cfg, Options{}); !errors.Is(err, ErrCopiedState) {
		t.Errorf("certificate without key: %v", err)
	}
}

func TestCheckClock(t *testing.T) {
	now := time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)
	leaf := &x509.Certificate{NotBefore: now.Add(-time.Hour), NotAfter: now.Add(30 * 24 * time.Hour)}
	if err := CheckClock(now, leaf); err != nil {
		t.Fatal(err)
	}
	if err := CheckClock(leaf.NotBefore.Add(-time.Minute), leaf); err != nil {
		t.Errorf("a minute of skew refused: %v", err)
	}
	err := CheckClock(now.AddDate(-3, 0, 0), leaf)
	var ce *ClockError
	if !errors.As(err, &ce) || ce.Expired || !strings.Contains(err.Error(), "clock is wrong") {
		t.Errorf("clock behind: %v", err)
	}
	err = CheckClock(now.AddDate(0, 2, 0), leaf)
	if !errors.As(err, &ce) || !ce.Expired || !strings.Contains(err.Error(), "expired") {
		t.Errorf("expired: %v", err)
	}
	if !IsClockError(err) || IsClockError(errors.New("x")) {
		t.Error("IsClockError")
	}
}

func TestRenewTimeAndJitter(t *testing.T) {
	nb := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	leaf := &x509.Certificate{NotBefore: nb, NotAfter: nb.Add(30 * 24 * time.Hour)}
	if got := RenewTime(leaf, 2.0/3.0); !got.Equal(nb.Add(20 * 24 * time.Hour)) {
		t.Errorf("RenewTime = %v", got)
	}
	for i := 0; i < 1000; i++ {
		if d := jitter(time.Second); d < 500*time.Millisecond || d > time.Second {
			t.Fatalf("jitter(1s) = %v", d)
		}
	}
}

func TestInspect(t *testing.T) {
	ca := testpki.NewCA(t, "vendor")
	cfg, k := device(t, ca)
	now := time.Now()
	statusOf := func(fs []Finding) (string, string) {
		worst, msgs := "ok", ""
		for _, f := range fs {
			if f.Status == "fail" || (f.Status == "warn" && worst == "ok") {
				worst = f.Status
			}
			msgs += f.Status + ": " + f.Message + "\n"
		}
		return worst, msgs
	}
	if st, msgs := statusOf(Inspect(cfg, now)); st != "fail" || !strings.Contains(msgs, "not enrolled") || !strings.Contains(msgs, "development only") {
		t.Fatalf("not enrolled:\n%s", msgs)
	}
	leaf := issue(t, ca, k.Public(), "SYS-1", now.Add(-time.Hour), now.Add(12*time.Hour))
	SaveChain(cfg.Device.StateDir, []*x509.Certificate{leaf})
	if st, msgs := statusOf(Inspect(cfg, now)); st != "warn" || !strings.Contains(msgs, "valid until") {
		t.Fatalf("enrolled with a file key:\n%s", msgs)
	}
	if _, msgs := statusOf(Inspect(cfg, now.Add(10*time.Hour))); !strings.Contains(msgs, "renewal has been due") {
		t.Errorf("renewal overdue:\n%s", msgs)
	}
	if st, msgs := statusOf(Inspect(cfg, now.AddDate(-2, 0, 0))); st != "fail" || !strings.Contains(msgs, "clock is wrong") {
		t.Errorf("clock behind:\n%s", msgs)
	}
	cfg.Identity.KeyURI = "tpm:/dev/no-such-tpm"
	if _, msgs := statusOf(Inspect(cfg, now)); !strings.Contains(msgs, "no TPM device at /dev/no-such-tpm") {
		t.Errorf("no TPM:\n%s", msgs)
	}
	cfg.Identity.KeyURI = "vault:x"
	if _, msgs := statusOf(Inspect(cfg, now)); !strings.Contains(msgs, "unknown key store scheme") {
		t.Errorf("unknown scheme:\n%s", msgs)
	}
	cfg.Identity.KeyURI = ""
	if _, msgs := statusOf(Inspect(cfg, now)); !strings.Contains(msgs, "no device key is configured") {
		t.Errorf("no key URI:\n%s", msgs)
	}
}
