//go:build !cgo

package main

// pkcs11Built reports whether this build can use PKCS#11 tokens (cgo only).
const pkcs11Built = false
