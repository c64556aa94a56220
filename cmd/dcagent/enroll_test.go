package main

import (
	"crypto/tls"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dcagent/dcagent/crypto/identity"
	"github.com/dcagent/dcagent/internal/realparts"
	"github.com/dcagent/dcagent/sim/ca"
)

// backendForTest serves the reference backend's CA on loopback.
func backendForTest(t *testing.T, cfg ca.Config) (*ca.CA, string) {
	t.Helper()
	if cfg.Dir == "" {
		cfg.Dir = t.TempDir()
	}
	c, err := ca.Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	l, err := tls.Listen("tcp", "127.0.0.1:0", c.ServerTLSConfig())
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: c.Handler(), ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return c, "https://" + l.Addr().String()
}

// agentConf writes a device configuration for the backend at url.
func agentConf(t *testing.T, c *ca.CA, url, keyURI, systemID string) (conf, state string) {
	t.Helper()
	dir := t.TempDir()
	state = filepath.Join(dir, "state")
	caFile := filepath.Join(dir, "vendor-ca.pem")
	os.WriteFile(caFile, c.CAPEM(), 0o644)
	conf = filepath.Join(dir, "dcagent.conf")
	body := "[device]\nsystem_id = " + systemID + "\nmodel = DC-9000\nstate_dir = " + state +
		"\n[backend]\nurl = " + url + "\nca_file = " + caFile + "\n[identity]\nkey_uri = " + keyURI + "\n"
	if err := os.WriteFile(conf, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return conf, state
}

// TestEnrollCommandSWTPM is what the demo does: swtpm with an
// endorsement key certificate, a backend that requires TPM attestation,
// dcagent enroll with a token read from a file.
func TestEnrollCommandSWTPM(t *testing.T) {
	sw := realparts.SWTPMWithEKForTest(t, "")
	roots, err := sw.ManufacturerRootsFile()
	if err != nil {
		t.Fatal(err)
	}
	c, url := backendForTest(t, ca.Config{RequireTPM: true, TPMRootsFile: roots})
	conf, state := agentConf(t, c, url, sw.URI("device"), "SYS-CLI-1")
	tok, err := c.NewToken("SYS-CLI-1", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	tokFile := filepath.Join(t.TempDir(), "token")
	os.WriteFile(tokFile, []byte(tok+"\n"), 0o600)
	out, errs, code := keyRun("--config", conf, "enroll", "--token-file", tokFile)
	if code != 0 {
		t.Fatalf("enroll: %d\n%s%s", code, out, errs)
	}
	for _, w := range []string{"enrolled SYS-CLI-1 (key in the TPM)", "valid until", "TPM 2.0 at " + sw.Addr(), identity.ChainPath(state)} {
		if !strings.Contains(out, w) {
			t.Errorf("output lacks %q:\n%s", w, out)
		}
	}
	if d, ok := c.Device("SYS-CLI-1"); !ok || !d.TPMAttested {
		t.Errorf("backend record %+v", d)
	}
	// The token is spent.
	_, errs, code = keyRun("--config", conf, "enroll", "--token", tok)
	if code != 1 || !strings.Contains(errs, "token_used") {
		t.Errorf("second enroll with the same token: %d %q", code, errs)
	}
}

func TestEnrollCommandFileKeyJSON(t *testing.T) {
	c, url := backendForTest(t, ca.Config{})
	conf, _ := agentConf(t, c, url, "file:dev.pem", "SYS-CLI-2")
	tok, _ := c.NewToken("SYS-CLI-2", time.Hour)
	out, errs, code := keyRun("--config", conf, "enroll", "--token", tok, "--json")
	if code != 0 {
		t.Fatalf("enroll: %d\n%s%s", code, out, errs)
	}
	var st struct {
		SystemID    string    `json:"system_id"`
		NotAfter    time.Time `json:"not_after"`
		Fingerprint string    `json:"key_fingerprint"`
	}
	if err := json.Unmarshal([]byte(out), &st); err != nil || st.SystemID != "SYS-CLI-2" || !strings.HasPrefix(st.Fingerprint, "sha256:") {
		t.Fatalf("json %q: %v", out, err)
	}
	// Refusals reach the person in words.
	tokOther, _ := c.NewToken("SYS-OTHER", time.Hour)
	_, errs, code = keyRun("--config", conf, "enroll", "--token", tokOther)
	if code != 1 || !strings.Contains(errs, "issued for another device") {
		t.Errorf("wrong-device token: %d %q", code, errs)
	}
	_, errs, code = keyRun("--config", conf, "enroll")
	if code != 1 || !strings.Contains(errs, "no token") {
		t.Errorf("no token: %d %q", code, errs)
	}
}

func TestReadToken(t *testing.T) {
	if tok, err := readToken("-", "", strings.NewReader("dct1_abc\n")); err != nil || tok != "dct1_abc" {
		t.Errorf("stdin: %q %v", tok, err)
	}
	if _, err := readToken("a", "b", nil); err == nil {
		t.Error("both flag and file accepted")
	}
	if _, err := readToken("", filepath.Join(t.TempDir(), "none"), nil); err == nil {
		t.Error("missing file accepted")
	}
}
