package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dcagent/dcagent/agent/config"
	"github.com/dcagent/dcagent/crypto/identity"
	_ "github.com/dcagent/dcagent/crypto/keystore/all"
	"github.com/dcagent/dcagent/sim/ca"
)

// TestTokenCommand: a token made by dcsim token while the backend runs on
// the same state directory enrolls a device, once.
func TestTokenCommand(t *testing.T) {
	state := t.TempDir()
	c, err := ca.Open(ca.Config{Dir: ca.DirIn(state)})
	if err != nil {
		t.Fatal(err)
	}
	l, err := tls.Listen("tcp", "127.0.0.1:0", c.ServerTLSConfig())
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: c.Handler(), ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(l)
	defer srv.Close()

	var out, errb bytes.Buffer
	if code := runMain([]string{"token", "--state", state, "--system-id", "SYS-TOK", "--ttl", "10m"}, &out, &errb); code != 0 {
		t.Fatalf("token: %d %s", code, errb.String())
	}
	tok := strings.TrimSpace(out.String())
	if !strings.HasPrefix(tok, "dct1_") || strings.Contains(tok, "\n") || !strings.Contains(errb.String(), "single use") {
		t.Fatalf("stdout %q stderr %q", out.String(), errb.String())
	}

	dev := t.TempDir()
	cfg := config.Default()
	cfg.Device.SystemID, cfg.Device.StateDir = "SYS-TOK", dev
	cfg.Backend.URL = "https://" + l.Addr().String()
	cfg.Backend.CAFile = filepath.Join(dev, "ca.pem")
	os.WriteFile(cfg.Backend.CAFile, c.CAPEM(), 0o644)
	cfg.Identity.KeyURI = "file:k.pem"
	id, err := identity.Enroll(context.Background(), cfg, tok, identity.EnrollOptions{GenerateKey: true})
	if err != nil {
		t.Fatal(err)
	}
	id.Close()
	if _, err := identity.Enroll(context.Background(), cfg, tok, identity.EnrollOptions{GenerateKey: true}); err == nil || !strings.Contains(err.Error(), "used already") {
		t.Fatalf("second use: %v", err)
	}
}

func TestTokenCommandErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"token"}, 2, "usage"},
		{[]string{"token", "--state", t.TempDir()}, 2, "usage"},
		{[]string{"token", "--state", t.TempDir(), "--system-id", "x", "--ttl", "-1s"}, 2, "positive"},
		{[]string{"token", "--state", t.TempDir(), "--system-id", "../etc"}, 1, "system ID"},
	} {
		var out, errb bytes.Buffer
		code := runMain(tc.args, &out, &errb)
		if code != tc.code || !strings.Contains(errb.String(), tc.want) || out.Len() != 0 {
			t.Errorf("%v: %d %q %q", tc.args, code, out.String(), errb.String())
		}
	}
}
