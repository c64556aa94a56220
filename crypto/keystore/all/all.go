// Package all registers every key store backend with crypto/keystore:
// file: (always), pkcs11: (real in cgo builds, a stub saying how to get
// one otherwise) and tpm:. A program imports it for its side effect:
//
//	import _ "github.com/dcagent/dcagent/crypto/keystore/all"
//
// Building with -tags dcagent_notpm leaves the TPM backend (and go-tpm)
// out; it exists to measure what the TPM support costs in binary size.
package all

import _ "github.com/dcagent/dcagent/crypto/p11"
