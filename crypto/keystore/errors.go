package keystore

import "errors"

var (
	// ErrNoKey means the token is there but holds no key by that name.
	ErrNoKey = errors.New("no such key")
	// ErrKeyExists means Generate found a key by that name already.
	ErrKeyExists = errors.New("key exists already")
	// ErrUnknownScheme means no backend is registered for the URI's scheme.
	ErrUnknownScheme = errors.New("unknown key store scheme")
	// ErrPINInURI means a pkcs11: URI carried pin-value.
	ErrPINInURI = errors.New("pin-value is refused: a PIN must not sit in a URI, where command lines, configuration files and logs would show it; use pin-source=file:/path (mode 0600) or $" + PINEnv)
	// ErrForeignKey means the state directory holds a key (a wrapped
	// blob) that this token cannot use: it was made by another one.
	ErrForeignKey = errors.New("the key was made by another token")
	// ErrNoAttestation means an Attester cannot attest on this token (a
	// TPM without an endorsement key certificate, for instance).
	ErrNoAttestation = errors.New("the key store cannot attest this key")
	// ErrNoPKCS11 is returned for pkcs11: URIs by a build without cgo.
	ErrNoPKCS11 = errors.New("this build has no PKCS#11 support; build with CGO_ENABLED=1 (make bin/dcagent-pkcs11)")
)
