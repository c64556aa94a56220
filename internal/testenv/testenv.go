// Package testenv finds the inputs that tests share: the repository root
// and the real captured hardware output in ../shared/testdata, which is not
// copied into the project (see DESIGN.md). A test that needs the captures
// fails, rather than skips, when they are missing, so CI cannot pass
// without them.
package testenv

import (
	"os"
	"path/filepath"
	"testing"
)

// RepoRoot returns the directory holding go.mod.
func RepoRoot(t testing.TB) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("testenv: no go.mod above the test's directory")
		}
		dir = parent
	}
}

// SharedTestdata returns the path of ../shared/testdata (or $DCAGENT_SHARED_TESTDATA).
func SharedTestdata(t testing.TB) string {
	t.Helper()
	if p := os.Getenv("DCAGENT_SHARED_TESTDATA"); p != "" {
		return p
	}
	p := filepath.Join(filepath.Dir(RepoRoot(t)), "shared", "testdata")
	if _, err := os.Stat(filepath.Join(p, "PROVENANCE.md")); err != nil {
		t.Fatalf("testenv: the shared captures are missing at %s (%v); they sit beside the repository as ../shared/testdata", p, err)
	}
	return p
}
