package tpm

import (
	"fmt"

	"github.com/dcagent/dcagent/crypto/keystore"
)

var (
	// ErrForeignKey means a key blob in the state directory was made by
	// another TPM: the directory was copied from another device, or this
	// TPM was cleared.
	// It wraps keystore.ErrForeignKey.
	ErrForeignKey = fmt.Errorf("this TPM cannot unwrap the key: the state directory holds another device's key (copied from another machine, or the TPM was cleared); this device needs its own key and a new enrollment: %w", keystore.ErrForeignKey)
	// ErrNoEKCert means the TPM holds no endorsement key certificate, so
	// it cannot prove which maker built it.
	// It wraps keystore.ErrNoAttestation.
	ErrNoEKCert = fmt.Errorf("the TPM holds no endorsement key certificate in NV (0x01c00002 for RSA, 0x01c0000a for ECC P-256): %w", keystore.ErrNoAttestation)
)
