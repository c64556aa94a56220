// Package buildroot holds the BR2_EXTERNAL tree that builds dcagent into a
// Buildroot firmware image. This test keeps the tree's structure sound and
// its build command line in step with the repository's Makefile, since
// Buildroot itself cannot be run in CI (it downloads its toolchain).
package buildroot

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/dcagent/dcagent/agent/config"
)

func read(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// makeVar returns the value of "NAME = value" (or :=) in a makefile.
func makeVar(t *testing.T, text, name string) string {
	t.Helper()
	re := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(name) + `\s*:?=\s*(.*)$`)
	m := re.FindStringSubmatch(text)
	if m == nil {
		t.Fatalf("%s is not set", name)
	}
	return strings.TrimSpace(m[1])
}

func TestTreeStructure(t *testing.T) {
	desc := read(t, "external.desc")
	if !regexp.MustCompile(`(?m)^name: DCAGENT$`).MatchString(desc) {
		t.Errorf("external.desc does not name the tree DCAGENT:\n%s", desc)
	}
	if !strings.Contains(read(t, "Config.in"), `source "$BR2_EXTERNAL_DCAGENT_PATH/package/dcagent/Config.in"`) {
		t.Error("Config.in does not source the package's Config.in")
	}
	if !strings.Contains(read(t, "external.mk"), "$(BR2_EXTERNAL_DCAGENT_PATH)/package/*/*.mk") {
		t.Error("external.mk does not include the package makefiles")
	}
	for _, f := range []string{"package/dcagent/Config.in", "package/dcagent/dcagent.mk", "package/dcagent/S95dcagent",
		"package/dcagent/dcagent.service", "package/dcagent/dcagent.conf", "configs/dcagent_qemu_aarch64_defconfig"} {
		if _, err := os.Stat(f); err != nil {
			t.Errorf("missing %s", f)
		}
	}
	st, err := os.Stat("package/dcagent/S95dcagent")
	if err == nil && st.Mode().Perm()&0o111 == 0 {
		t.Error("S95dcagent is not executable")
	}
}

// Every BR2_PACKAGE_DCAGENT_* symbol the makefile or a defconfig uses must
// be declared in Config.in, or Kconfig silently drops it.
func TestSymbolsDeclared(t *testing.T) {
	declared := map[string]bool{}
	for _, m := range regexp.MustCompile(`(?m)^config (BR2_PACKAGE_DCAGENT\w*)`).FindAllStringSubmatch(read(t, "package/dcagent/Config.in"), -1) {
		declared[m[1]] = true
	}
	used := read(t, "package/dcagent/dcagent.mk") + read(t, "configs/dcagent_qemu_aarch64_defconfig")
	for _, m := range regexp.MustCompile(`BR2_PACKAGE_DCAGENT\w*`).FindAllString(used, -1) {
		if !declared[m] {
			t.Errorf("%s is used but not declared in Config.in", m)
		}
	}
}

// The package must build what `make build` builds: the same module and
// command, static (CGO_ENABLED=0) unless PKCS#11 is chosen, stripped and
// version-stamped the same way.
func TestBuildMatchesMakefile(t *testing.T) {
	mk := read(t, "package/dcagent/dcagent.mk")
	makefile := read(t, filepath.Join("..", "Makefile"))
	gomod := read(t, filepath.Join("..", "go.mod"))

	module := regexp.MustCompile(`(?m)^module (\S+)`).FindStringSubmatch(gomod)[1]
	if got := makeVar(t, mk, "DCAGENT_GOMOD"); got != module {
		t.Errorf("DCAGENT_GOMOD = %q, go.mod says %q", got, module)
	}
	target := makeVar(t, mk, "DCAGENT_BUILD_TARGETS")
	if !strings.Contains(makefile, "./"+target) {
		t.Errorf("DCAGENT_BUILD_TARGETS %q is not what the Makefile builds", target)
	}
	if _, err := os.Stat(filepath.Join("..", target, "main.go")); err != nil {
		t.Errorf("build target %s has no main.go", target)
	}

	// Makefile: GOFLAGS_DEVICE := -trimpath -ldflags "-s -w -X main.version=$(VERSION)"
	dev := makeVar(t, makefile, "GOFLAGS_DEVICE")
	m := regexp.MustCompile(`-ldflags "([^"]*)"`).FindStringSubmatch(dev)
	if m == nil {
		t.Fatalf("GOFLAGS_DEVICE has no -ldflags: %q", dev)
	}
	wantLD := strings.ReplaceAll(m[1], "$(VERSION)", "$(DCAGENT_VERSION)")
	if got := makeVar(t, mk, "DCAGENT_LDFLAGS"); got != wantLD {
		t.Errorf("DCAGENT_LDFLAGS = %q, the Makefile's device build uses %q", got, wantLD)
	}
	if strings.Contains(dev, "-gcflags=all=-l") != strings.Contains(mk, "DCAGENT_BUILD_OPTS = -gcflags=all=-l") {
		t.Error("the Makefile's device build and the package disagree on -gcflags=all=-l")
	}
	if !strings.Contains(dev, "-trimpath") {
		t.Error("the Makefile's device build lost -trimpath (Buildroot's golang-package adds it)")
	}
	if !regexp.MustCompile(`(?m)^bin/linux-arm64/%:.*\n.*\n\s*CGO_ENABLED=0 `).MatchString(makefile) {
		t.Error("the Makefile's arm64 device build is not CGO_ENABLED=0")
	}
	if !regexp.MustCompile(`else\s*\nDCAGENT_GO_ENV = CGO_ENABLED=0`).MatchString(mk) {
		t.Error("the package's default build is not CGO_ENABLED=0")
	}
}

// The configuration the package installs must parse, once the one value a
// device maker must supply (the system ID) is filled in, and must be made
// readable by root only.
func TestDefaultConfigParses(t *testing.T) {
	conf := read(t, "package/dcagent/dcagent.conf")
	conf = strings.ReplaceAll(conf, "@KEY_URI@", "tpm:/dev/tpmrm0")
	conf = strings.ReplaceAll(conf, "@BACKEND_URL@", "https://support.invalid:8443")
	conf = strings.Replace(conf, "system_id =", "system_id = SYS-TEST", 1)
	if _, err := config.Parse("dcagent.conf", []byte(conf)); err != nil {
		t.Fatalf("installed configuration does not parse: %v", err)
	}
	mk := read(t, "package/dcagent/dcagent.mk")
	if !strings.Contains(mk, "chmod 0600 $(TARGET_DIR)/etc/dcagent/dcagent.conf") {
		t.Error("the configuration is not installed 0600")
	}
	if !strings.Contains(mk, "-d -m 0700 $(TARGET_DIR)/var/lib/dcagent") {
		t.Error("the state directory is not created 0700")
	}
}

func TestInitScriptsRunTheDaemon(t *testing.T) {
	for _, f := range []string{"package/dcagent/S95dcagent", "package/dcagent/dcagent.service"} {
		s := read(t, f)
		for _, want := range []string{"/usr/bin/dcagent", "--config /etc/dcagent/dcagent.conf", "run", "HUP"} {
			if !strings.Contains(s, want) {
				t.Errorf("%s does not contain %q", f, want)
			}
		}
	}
}
