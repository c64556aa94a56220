package realparts

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// SoftHSMModule is where Debian's softhsm2 package puts the PKCS#11
// module.
const SoftHSMModule = "/usr/lib/softhsm/libsofthsm2.so"

// SoftHSM is a SoftHSM 2 installation of its own: a configuration file
// and a token directory under a folder the caller owns. SoftHSM reads the
// file named by $SOFTHSM2_CONF when the module is initialised, so a
// process uses the tokens of the SoftHSM whose Env it runs with.
type SoftHSM struct {
	Dir      string // the folder given to NewSoftHSM
	ConfPath string // SOFTHSM2_CONF
	TokenDir string
}

// SoftHSMToken is one initialised token of a SoftHSM.
type SoftHSMToken struct {
	HSM   *SoftHSM
	Label string
	PIN   string // the user PIN; it is also in PINFile
	SOPIN string
	// PINFile holds the user PIN (mode 0600), for pin-source=file:.
	PINFile string
}

// NewSoftHSM writes a SoftHSM configuration with a file object store
// under dir (created if missing). It has no token yet: see InitToken.
func NewSoftHSM(dir string) (*SoftHSM, error) {
	if _, err := os.Stat(SoftHSMModule); err != nil {
		return nil, fmt.Errorf("realparts: SoftHSM is not installed (Debian package softhsm2; scripts/deps.sh installs it): %w", err)
	}
	h := &SoftHSM{Dir: dir, ConfPath: filepath.Join(dir, "softhsm2.conf"), TokenDir: filepath.Join(dir, "tokens")}
	if err := os.MkdirAll(h.TokenDir, 0o700); err != nil {
		return nil, fmt.Errorf("realparts: SoftHSM token dir: %w", err)
	}
	conf := fmt.Sprintf("directories.tokendir = %s\nobjectstore.backend = file\nlog.level = ERROR\nslots.removable = false\n", h.TokenDir)
	if err := os.WriteFile(h.ConfPath, []byte(conf), 0o600); err != nil {
		return nil, fmt.Errorf("realparts: %w", err)
	}
	return h, nil
}

// Env returns the environment entry that points SoftHSM at this
// installation.
func (h *SoftHSM) Env() string { return "SOFTHSM2_CONF=" + h.ConfPath }

// InitToken initialises a new token with the given label and user PIN
// in the first free slot (softhsm2-util --init-token --free).
func (h *SoftHSM) InitToken(ctx context.Context, label, pin string) (*SoftHSMToken, error) {
	soPIN := "so-" + pin
	cmd := exec.CommandContext(ctx, "softhsm2-util", "--init-token", "--free",
		"--label", label, "--so-pin", soPIN, "--pin", pin)
	cmd.Env = append(os.Environ(), h.Env())
	if out, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("realparts: softhsm2-util --init-token %q: %w\n%s", label, err, lastLines(out, 5))
	}
	pinFile := filepath.Join(h.Dir, label+".pin")
	if err := os.WriteFile(pinFile, []byte(pin+"\n"), 0o600); err != nil {
		return nil, fmt.Errorf("realparts: %w", err)
	}
	return &SoftHSMToken{HSM: h, Label: label, PIN: pin, SOPIN: soPIN, PINFile: pinFile}, nil
}

// URI returns an RFC 7512 pkcs11: URI naming the key object in this token,
// with the module path and the PIN file (never the PIN itself).
func (t *SoftHSMToken) URI(object string) string {
	return "pkcs11:token=" + pctEscape(t.Label, false) + ";object=" + pctEscape(object, false) +
		"?module-path=" + pctEscape(SoftHSMModule, true) + "&pin-source=file:" + pctEscape(t.PINFile, true)
}

// pctEscape percent-encodes everything RFC 7512 does not allow unescaped
// in an attribute value ('/' is allowed in the query part only).
func pctEscape(s string, query bool) string {
	ok := "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~:@!$'()*+,"
	if query {
		ok += "/"
	}
	var b []byte
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x80 && containsByte(ok, c) {
			b = append(b, c)
			continue
		}
		b = append(b, fmt.Sprintf("%%%02X", c)...)
	}
	return string(b)
}

func containsByte(s string, c byte) bool {
	for i := 0; i < len(s); i++ {
		if s[i] == c {
			return true
		}
	}
	return false
}

// SoftHSMForTest makes a SoftHSM of the test's own with one token
// labelled label (PIN "1234"), and points this process at it with
// t.Setenv("SOFTHSM2_CONF"), so the test must not run in parallel.
// The PKCS#11 module reads the variable when a store first initialises
// it; a store closed at the end of a test finalises the module, so the
// next test's SoftHSM is read afresh.
func SoftHSMForTest(t testing.TB, label string) *SoftHSMToken {
	t.Helper()
	h, err := NewSoftHSM(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	tok, err := h.InitToken(ctx, label, "1234")
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("SOFTHSM2_CONF", h.ConfPath)
	return tok
}
