//go:build !cgo

package p11

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/dcagent/dcagent/crypto/keystore"
)

// TestStaticBuildSaysNoPKCS11 runs with CGO_ENABLED=0: a pkcs11: URI gets
// a plain answer that names the build to use instead.
func TestStaticBuildSaysNoPKCS11(t *testing.T) {
	_, err := keystore.Open(context.Background(), "pkcs11:token=dcagent;object=device?module-path=/usr/lib/softhsm/libsofthsm2.so", keystore.Options{})
	if !errors.Is(err, keystore.ErrNoPKCS11) || !strings.Contains(err.Error(), "CGO_ENABLED=1") {
		t.Fatalf("pkcs11: URI in a static build: %v", err)
	}
	if !errors.Is(keystore.Missing("pkcs11"), keystore.ErrNoPKCS11) {
		t.Fatalf("Missing(pkcs11) = %v", keystore.Missing("pkcs11"))
	}
}
