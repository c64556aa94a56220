//go:build cgo

package ca

import (
	"context"
	"crypto/tls"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dcagent/dcagent/crypto/identity"
	"github.com/dcagent/dcagent/crypto/keystore"
	"github.com/dcagent/dcagent/crypto/tlsconf"
	"github.com/dcagent/dcagent/internal/realparts"
)

// TestEnrollWithSoftHSM: a key made in a fresh SoftHSM token, a CSR it
// signed, enrollment, a mutual-TLS request accepted, a renewal.
func TestEnrollWithSoftHSM(t *testing.T) {
	tok := realparts.SoftHSMForTest(t, "dcagent")
	b := startBackend(t, Config{})
	cfg := agentConfig(t, b, tok.URI("device"), t.TempDir(), "SYS-HSM-1")
	id := enrollDevice(t, b, cfg)
	if got, err := ping(id, b); err != nil || got != "hello SYS-HSM-1" {
		t.Fatalf("ping: %q, %v", got, err)
	}
	if err := id.RenewNow(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, err := ping(id, b); err != nil {
		t.Fatal(err)
	}
	if d, _ := b.ca.Device("SYS-HSM-1"); d.TPMAttested {
		t.Error("a PKCS#11 key recorded as TPM-attested")
	}
}

// TestCopiedDevicePKCS11: the state directory and configuration of an
// enrolled device, copied to a second machine whose token has the same
// label, cannot authenticate: first the token has no such key, then a key
// of its own that the certificate is not for. Each time Load says why,
// and the backend refuses the copied certificate with the other key.
func TestCopiedDevicePKCS11(t *testing.T) {
	b := startBackend(t, Config{})
	tokA := realparts.SoftHSMForTest(t, "dcagent")
	stateA := filepath.Join(t.TempDir(), "state")
	cfgA := agentConfig(t, b, tokA.URI("device"), stateA, "SYS-HSM-COPY")
	tokB, err := realparts.NewSoftHSM(t.TempDir()) // machine B's HSM
	if err != nil {
		t.Fatal(err)
	}
	func() {
		id := enrollDevice(t, b, cfgA)
		defer id.Close()
		if _, err := ping(id, b); err != nil {
			t.Fatal(err)
		}
	}()

	// Machine B: same configuration, same token label, its own token.
	t.Setenv("SOFTHSM2_CONF", tokB.ConfPath)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	tb, err := tokB.InitToken(ctx, "dcagent", "1234")
	if err != nil {
		t.Fatal(err)
	}
	stateB := filepath.Join(t.TempDir(), "state")
	if err := os.CopyFS(stateB, os.DirFS(stateA)); err != nil {
		t.Fatal(err)
	}
	cfgB := *cfgA
	cfgB.Device.StateDir = stateB
	cfgB.Backend.CAFile = filepath.Join(stateB, "vendor-ca.pem")
	cfgB.Identity.KeyURI = tb.URI("device")
	_, err = identity.Load(context.Background(), &cfgB, identity.Options{})
	if !errors.Is(err, identity.ErrCopiedState) || !strings.Contains(err.Error(), "copied from another device") || !strings.Contains(err.Error(), "no private key") {
		t.Fatalf("load on a token without the key: %v", err)
	}

	s, err := keystore.Open(context.Background(), cfgB.Identity.KeyURI, keystore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	kB, err := s.Generate(context.Background(), keystore.ECCP256)
	if err != nil {
		t.Fatal(err)
	}
	_, err = identity.Load(context.Background(), &cfgB, identity.Options{})
	if !errors.Is(err, identity.ErrCopiedState) || !strings.Contains(err.Error(), "certificate key sha256:") {
		t.Fatalf("load with another key on the token: %v", err)
	}
	chain, err := identity.LoadChain(stateB)
	if err != nil {
		t.Fatal(err)
	}
	cli, _ := tlsconf.Client(b.ca.Pool(), &tls.Certificate{Certificate: [][]byte{chain[0].Raw}, PrivateKey: kB}, "127.0.0.1")
	c := &http.Client{Transport: &http.Transport{TLSClientConfig: cli}, Timeout: 20 * time.Second}
	defer c.CloseIdleConnections()
	if rsp, err := c.Get(b.url + "/v1/ping"); err == nil {
		rsp.Body.Close()
		t.Fatalf("the copied certificate with machine B's key got status %d", rsp.StatusCode)
	}
}
