// Package p11 keeps dcagent's device key in a PKCS#11 token (an HSM,
// a smart card, SoftHSM in tests) through miekg/pkcs11, and registers the
// pkcs11: scheme with crypto/keystore. Keys are named by RFC 7512 URIs
// (see keystore.PKCS11URI); the PIN comes from a file or the environment,
// never from the URI.
//
// miekg/pkcs11 loads the token's module with dlopen, so this backend
// exists only in builds with cgo. A static build (CGO_ENABLED=0) registers
// the scheme all the same, and answers any pkcs11: URI with
// keystore.ErrNoPKCS11, which says how to get a build that has it.
//
// Keys made here are token objects marked sensitive and not extractable:
// the token will not hand them out. One PKCS#11 session per store is
// serialised by a mutex (a session is not safe for concurrent use); one
// module instance per module path is shared by the stores of a process
// and finalised when the last one closes.
package p11
