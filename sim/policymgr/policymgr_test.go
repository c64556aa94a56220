package policymgr

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dcagent/dcagent/agent/audit"
	"github.com/dcagent/dcagent/agent/config"
	"github.com/dcagent/dcagent/agent/policy"
	"github.com/dcagent/dcagent/internal/testpki"
)

// The device's policy engine against the reference manager.
func TestDeviceSyncsFromManager(t *testing.T) {
	ca := testpki.NewCA(t, "customer CA")
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	m := New(key)
	if err := m.SetPolicy([]byte("dcagent-policy 1\nversion 1\nall remote:ssh ask\n")); err != nil {
		t.Fatal(err)
	}
	if err := m.SetPolicy([]byte("dcagent-policy 1\nversion 1\nall remote:ssh perhaps\n")); err == nil {
		t.Fatal("the manager took a policy no device would accept")
	}
	url, err := m.Start(ca.Server(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })

	dir := t.TempDir()
	pub, _ := policy.MarshalPublicKey(key.Public())
	keyFile := filepath.Join(dir, "pm.pem")
	os.WriteFile(keyFile, pub, 0o644)
	cfg := config.Default().Policy
	cfg.ManagerURL, cfg.ManagerCAFile, cfg.ManagerKeyFile = url, ca.WriteCAFile(t, dir), keyFile
	log, err := audit.Open(audit.Options{Dir: filepath.Join(dir, "audit")})
	if err != nil {
		t.Fatal(err)
	}
	defer log.Close()
	e, err := policy.New(policy.Options{Config: cfg, StateDir: dir, Audit: log})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	ctx := context.Background()
	if err := e.SyncNow(ctx); err != nil {
		t.Fatal(err)
	}
	if err := e.SyncNow(ctx); err != nil {
		t.Fatal(err)
	}
	if st := m.Stats(); st.Served != 1 || st.NotModified != 1 {
		t.Fatalf("manager stats %+v: the second request should have been conditional", st)
	}
	if d := e.Decide("remote:ssh"); d.Effect != policy.Ask {
		t.Fatalf("%+v", d)
	}
	m.SetPolicy([]byte("dcagent-policy 1\nversion 2\nall remote:ssh allow\n"))
	if err := e.SyncNow(ctx); err != nil || e.Decide("remote:ssh").Effect != policy.Allow {
		t.Fatalf("version 2: %v", err)
	}
	// A policy that is not signed is refused; the last good one stays.
	m.SetRaw([]byte("dcagent-policy 1\nversion 3\nall * allow\n"))
	if err := e.SyncNow(ctx); err == nil || !strings.Contains(err.Error(), "not signed") {
		t.Fatalf("unsigned: %v", err)
	}
	m.SetFailure(http.StatusInternalServerError)
	if err := e.SyncNow(ctx); err == nil || !strings.Contains(e.Status().LastError, "500") {
		t.Fatalf("failure: %v", err)
	}
	if e.Current().Version != 2 {
		t.Fatal("the last good policy was lost")
	}
}

func TestIfNoneMatch(t *testing.T) {
	for h, want := range map[string]bool{`"a"`: true, `W/"a"`: true, `"b", "a"`: true, `*`: true, `"b"`: false, ``: false} {
		if matches(h, `"a"`) != want {
			t.Errorf("%q: %v", h, !want)
		}
	}
}
