//go:build !cgo

package p11

import (
	"context"
	"fmt"

	"github.com/dcagent/dcagent/crypto/keystore"
)

func init() { keystore.Register("pkcs11", open) }

// open reads the URI, so that a malformed one is still reported as such,
// and then says that this build cannot use it.
func open(ctx context.Context, uri string, opts keystore.Options) (keystore.Store, error) {
	if _, err := keystore.ParsePKCS11URI(uri); err != nil {
		return nil, err
	}
	return nil, fmt.Errorf("keystore: pkcs11: %w", keystore.ErrNoPKCS11)
}
