//go:build !cgo

package p11

import (
	"fmt"

	"github.com/dcagent/dcagent/crypto/keystore"
)

func init() {
	keystore.RegisterMissing("pkcs11", fmt.Errorf("keystore: pkcs11: %w", keystore.ErrNoPKCS11))
}
