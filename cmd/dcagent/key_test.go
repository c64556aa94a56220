package main

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dcagent/dcagent/internal/realparts"
	"github.com/dcagent/dcagent/internal/testenv"
)

func keyRun(args ...string) (string, string, int) {
	var out, errb bytes.Buffer
	code := runMain(args, &out, &errb)
	return out.String(), errb.String(), code
}

func TestKeyGenerateShowFile(t *testing.T) {
	state := t.TempDir()
	out, errs, code := keyRun("key", "generate", "--uri", "file:dev.pem", "--state-dir", state)
	if code != 0 {
		t.Fatalf("generate: %d\n%s%s", code, out, errs)
	}
	if !strings.Contains(errs, "development only") {
		t.Errorf("no warning for a file key: %q", errs)
	}
	for _, w := range []string{"key generated", "public key:  ECDSA P-256", "fingerprint: sha256:", "BEGIN PUBLIC KEY"} {
		if !strings.Contains(out, w) {
			t.Errorf("generate output lacks %q:\n%s", w, out)
		}
	}
	out2, errs, code := keyRun("key", "show", "--uri", "file:dev.pem", "--state-dir", state, "--json")
	if code != 0 {
		t.Fatalf("show: %d %s", code, errs)
	}
	var info keyInfo
	if err := json.Unmarshal([]byte(out2), &info); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, info.Fingerprint) || info.Algorithm != "ECDSA P-256" {
		t.Errorf("show %+v does not match generate:\n%s", info, out)
	}
	_, errs, code = keyRun("key", "generate", "--uri", "file:dev.pem", "--state-dir", state)
	if code != 1 || !strings.Contains(errs, "exists already") {
		t.Errorf("second generate: %d %q", code, errs)
	}
	_, errs, code = keyRun("key", "show", "--uri", "file:none.pem", "--state-dir", state)
	if code != 1 || !strings.Contains(errs, "dcagent key generate") {
		t.Errorf("show without a key: %d %q", code, errs)
	}
	if _, _, code := keyRun("key", "rotate"); code != 2 {
		t.Errorf("unknown subcommand: %d", code)
	}
	if _, errs, code := keyRun("key", "generate", "--uri", "file:x.pem", "--state-dir", state, "--alg", "dsa"); code != 1 || !strings.Contains(errs, "ecc-p256") {
		t.Errorf("bad algorithm: %d %q", code, errs)
	}
}

func TestKeyGenerateShowTPM(t *testing.T) {
	sw := realparts.SWTPMForTest(t)
	state := t.TempDir()
	conf := filepath.Join(t.TempDir(), "dcagent.conf")
	os.WriteFile(conf, []byte("[device]\nsystem_id = SYS-1\nstate_dir = "+state+"\n[identity]\nkey_uri = "+sw.URI("device")+"\n"), 0o644)
	out, errs, code := keyRun("--config", conf, "key", "generate", "--alg", "rsa-2048")
	if code != 0 {
		t.Fatalf("generate: %d\n%s%s", code, out, errs)
	}
	out, errs, code = keyRun("--config", conf, "key", "show")
	if code != 0 {
		t.Fatalf("show: %d %s", code, errs)
	}
	for _, w := range []string{"public key:  RSA 2048", "lives in:    TPM 2.0 at " + sw.Addr(), "device.tpmkey", "useless on any other TPM"} {
		if !strings.Contains(out, w) {
			t.Errorf("show output lacks %q:\n%s", w, out)
		}
	}
}

func TestKeyPKCS11URIRefusesPIN(t *testing.T) {
	_, errs, code := keyRun("key", "show", "--state-dir", t.TempDir(), "--uri", "pkcs11:token=t;object=k?module-path=/m.so&pin-value=s3cret")
	if code != 1 || !strings.Contains(errs, "pin-value is refused") || strings.Contains(errs, "s3cret") {
		t.Fatalf("pin-value: %d %q", code, errs)
	}
}

// TestStaticBuildSaysNoPKCS11 builds the static agent and gives it a
// pkcs11: key: it says plainly that it cannot, and which build can.
func TestStaticBuildSaysNoPKCS11(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "dcagent-static")
	build := exec.Command("go", "build", "-o", bin, ".")
	build.Dir = filepath.Join(testenv.RepoRoot(t), "cmd", "dcagent")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("static build: %v\n%s", err, out)
	}
	var errb bytes.Buffer
	cmd := exec.Command(bin, "key", "show", "--state-dir", t.TempDir(), "--uri", "pkcs11:token=dcagent;object=device?module-path=/usr/lib/softhsm/libsofthsm2.so")
	cmd.Stderr = &errb
	err := cmd.Run()
	if err == nil {
		t.Fatal("the static build opened a pkcs11: key")
	}
	if want := "this build has no PKCS#11 support; build with CGO_ENABLED=1 (make bin/dcagent-pkcs11)"; !strings.Contains(errb.String(), want) {
		t.Fatalf("stderr %q lacks %q", errb.String(), want)
	}
}
