//go:build tools

// Package tools pins the modules that dcagent's parts depend on, so that
// go.mod lists them before every part that uses them is written.
package tools

import (
	_ "github.com/cornelk/hashmap"
	_ "github.com/fxamacker/cbor/v2"
	_ "github.com/google/go-tpm/tpm2"
	_ "github.com/klauspost/compress/zstd"
	_ "github.com/miekg/pkcs11"
	_ "github.com/pion/dtls/v3"
	_ "github.com/vishvananda/netlink"
)
