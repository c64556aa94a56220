module github.com/dcagent/dcagent

go 1.26.8

require (
	github.com/cornelk/hashmap v1.0.8
	github.com/fxamacker/cbor/v2 v2.10.0
	github.com/google/go-tpm v0.9.8
	github.com/klauspost/compress v1.20.5
	github.com/miekg/pkcs11 v1.1.2
	github.com/pion/dtls/v3 v3.1.16
	github.com/vishvananda/netlink v1.3.1
)

require (
	github.com/emersion/go-sasl v0.0.0-20241020182733-b788ff22d5a6 // indirect
	github.com/emersion/go-smtp v0.26.0 // indirect
	github.com/pion/logging v0.2.4 // indirect
	github.com/pion/transport/v5 v5.0.0 // indirect
	github.com/vishvananda/netns v0.0.5 // indirect
	github.com/x448/float16 v0.8.4 // indirect
	golang.org/x/crypto v0.48.0 // indirect
	golang.org/x/sys v0.41.0 // indirect
)
