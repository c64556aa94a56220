package tpm

import (
	"encoding/asn1"
	"encoding/binary"
	"encoding/pem"
	"errors"
	"fmt"

	"github.com/google/go-tpm/tpm2"
)

// blobPEMType is the PEM type of a TPM key blob in the format the TSS2
// OpenSSL engine and provider use ("TSS2 PRIVATE KEY"), so that
// tpm2-openssl can use a device key made by dcagent and the other way
// round.
const blobPEMType = "TSS2 PRIVATE KEY"

// oidLoadableKey marks a key loadable with TPM2_Load (id-loadablekey).
var oidLoadableKey = asn1.ObjectIdentifier{2, 23, 133, 10, 1, 3}

// parentOwner means the parent is the primary key made from the standard
// SRK template in the owner hierarchy.
const parentOwner = 0x40000001

// tssKey is the ASN.1 of a TSS2 key: type, emptyAuth, parent, public and
// private part. The optional policy and secret fields are not used by
// dcagent's keys and are refused when present.
type tssKey struct {
	Type      asn1.ObjectIdentifier
	EmptyAuth bool `asn1:"optional,explicit,tag:0"`
	Parent    int64
	Public    []byte // TPM2B_PUBLIC, with its size
	Private   []byte // TPM2B_PRIVATE, with its size
}

// keyBlob is a key's public and wrapped private part.
type keyBlob struct {
	public  tpm2.TPMTPublic
	pubRaw  []byte // TPMT_PUBLIC bytes, as the TPM gave them
	private []byte // TPM2B_PRIVATE contents
}

// marshalBlob encodes a blob as TSS2 PEM.
func marshalBlob(b *keyBlob) ([]byte, error) {
	der, err := asn1.Marshal(tssKey{
		Type:      oidLoadableKey,
		EmptyAuth: true,
		Parent:    parentOwner,
		Public:    sized(b.pubRaw),
		Private:   sized(b.private),
	})
	if err != nil {
		return nil, fmt.Errorf("tpm: encode key blob: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: blobPEMType, Bytes: der}), nil
}

// parseBlob decodes a TSS2 PEM blob and checks that it is a key dcagent
// can use: loadable, no password, under the owner SRK.
func parseBlob(data []byte) (*keyBlob, error) {
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, errors.New("no PEM block")
	}
	if block.Type != blobPEMType {
		return nil, fmt.Errorf("PEM type %q, want %q", block.Type, blobPEMType)
	}
	var k tssKey
	rest, err := asn1.Unmarshal(block.Bytes, &k)
	if err != nil {
		return nil, fmt.Errorf("ASN.1: %w", err)
	}
	if len(rest) > 0 {
		return nil, fmt.Errorf("%d bytes after the key", len(rest))
	}
	if !k.Type.Equal(oidLoadableKey) {
		return nil, fmt.Errorf("key type %v is not a loadable key (%v)", k.Type, oidLoadableKey)
	}
	if !k.EmptyAuth {
		return nil, errors.New("the key has a password; dcagent's keys have none")
	}
	if k.Parent != parentOwner {
		return nil, fmt.Errorf("parent 0x%x: only keys under the owner SRK (0x%x) are supported", k.Parent, parentOwner)
	}
	pubRaw, err := unsized(k.Public)
	if err != nil {
		return nil, fmt.Errorf("public part: %w", err)
	}
	priv, err := unsized(k.Private)
	if err != nil {
		return nil, fmt.Errorf("private part: %w", err)
	}
	if len(priv) == 0 {
		return nil, errors.New("empty private part")
	}
	pub, err := tpm2.Unmarshal[tpm2.TPMTPublic](pubRaw)
	if err != nil {
		return nil, fmt.Errorf("public part: %w", err)
	}
	if _, err := tpm2.Pub(*pub); err != nil {
		return nil, fmt.Errorf("public part: %w", err)
	}
	return &keyBlob{public: *pub, pubRaw: pubRaw, private: priv}, nil
}

func sized(b []byte) []byte {
	out := make([]byte, 2+len(b))
	binary.BigEndian.PutUint16(out, uint16(len(b)))
	copy(out[2:], b)
	return out
}

func unsized(b []byte) ([]byte, error) {
	if len(b) < 2 {
		return nil, errors.New("too short for a TPM2B")
	}
	n := int(binary.BigEndian.Uint16(b))
	if n != len(b)-2 {
		return nil, fmt.Errorf("TPM2B says %d bytes, holds %d", n, len(b)-2)
	}
	return b[2:], nil
}
