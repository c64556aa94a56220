package tpm

import (
	"context"
	"encoding/asn1"
	"errors"
	"fmt"

	"github.com/dcagent/dcagent/crypto/keystore"
	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"
)

// How a TPM proves that the device key lives in it (the verifier's side
// is in the backend, sim/ca):
//
//  1. The endorsement key (EK) is a decryption key the TPM maker
//     certified; its certificate sits in the TPM's NV.
//  2. The attestation key (AK) is a restricted signing key made in the
//     endorsement hierarchy. "Restricted" means the TPM signs with it only
//     structures it made itself, which start with TPM_GENERATED_VALUE.
//  3. TPM2_Certify: the AK signs a structure naming the device key, whose
//     name is a hash of its public area, attributes included: fixedTPM
//     and sensitiveDataOrigin say the TPM made the key and will not let it
//     out. A key made in software and loaded with TPM2_LoadExternal can be
//     certified too, but never with fixedTPM set.
//  4. Credential activation ties the AK to the EK: the verifier encrypts
//     a secret to the EK for the AK's name (MakeCredential, in software),
//     and only a TPM holding both keys can recover it (ActivateCredential).

// ekSpec is where one kind of EK and its certificate live (TCG EK
// Credential Profile, low range).
type ekSpec struct {
	kind       string
	certIndex  tpm2.TPMHandle
	persistent tpm2.TPMHandle
	template   tpm2.TPMTPublic
}

var ekSpecs = []ekSpec{
	{"RSA 2048", 0x01c00002, 0x81010001, tpm2.RSAEKTemplate},
	{"ECC P-256", 0x01c0000a, 0x81010002, tpm2.ECCEKTemplate},
}

// akTemplate is the attestation key: ECC P-256, restricted, signing with
// ECDSA-SHA256, fixed to this TPM. A primary key of the endorsement
// hierarchy, so the TPM makes the same AK every time from its
// endorsement seed and nothing needs storing between the two enrollment
// round trips.
var akTemplate = tpm2.TPMTPublic{
	Type:    tpm2.TPMAlgECC,
	NameAlg: tpm2.TPMAlgSHA256,
	ObjectAttributes: tpm2.TPMAObject{
		FixedTPM:            true,
		FixedParent:         true,
		SensitiveDataOrigin: true,
		UserWithAuth:        true,
		NoDA:                true,
		Restricted:          true,
		SignEncrypt:         true,
	},
	Parameters: tpm2.NewTPMUPublicParms(tpm2.TPMAlgECC, &tpm2.TPMSECCParms{
		CurveID: tpm2.TPMECCNistP256,
		Scheme: tpm2.TPMTECCScheme{
			Scheme:  tpm2.TPMAlgECDSA,
			Details: tpm2.NewTPMUAsymScheme(tpm2.TPMAlgECDSA, &tpm2.TPMSSigSchemeECDSA{HashAlg: tpm2.TPMAlgSHA256}),
		},
		KDF:       tpm2.TPMTKDFScheme{Scheme: tpm2.TPMAlgNull},
		Symmetric: tpm2.TPMTSymDefObject{Algorithm: tpm2.TPMAlgNull},
	}),
	Unique: tpm2.NewTPMUPublicID(tpm2.TPMAlgECC, &tpm2.TPMSECCPoint{}),
}

// loadedEK is an endorsement key ready for use.
type loadedEK struct {
	handle    tpm2.TPMHandle
	name      tpm2.TPM2BName
	public    []byte // TPMT_PUBLIC
	cert      []byte // DER
	transient bool
}

// Attest certifies the device key with the TPM's attestation key and
// gathers the endorsement key and its certificate; see keystore.Evidence.
func (s *Store) Attest(ctx context.Context, qualifyingData []byte) (*keystore.Evidence, error) {
	var ev *keystore.Evidence
	err := s.t.do(ctx, func(tp transport.TPM) error {
		if err := s.ensureLoadedForAttest(tp); err != nil {
			return err
		}
		ek, err := s.t.loadEK(tp)
		if err != nil {
			return err
		}
		defer ek.flush(tp)
		ak, err := createAK(tp)
		if err != nil {
			return err
		}
		defer flush(tp, ak.ObjectHandle)
		cert, err := tpm2.Certify{
			ObjectHandle:   tpm2.AuthHandle{Handle: s.handle, Name: s.name, Auth: tpm2.PasswordAuth(nil)},
			SignHandle:     tpm2.AuthHandle{Handle: ak.ObjectHandle, Name: ak.Name, Auth: tpm2.PasswordAuth(nil)},
			QualifyingData: tpm2.TPM2BData{Buffer: qualifyingData},
			InScheme:       tpm2.TPMTSigScheme{Scheme: tpm2.TPMAlgNull},
		}.Execute(tp)
		if err != nil {
			return fmt.Errorf("tpm: certify the device key: %w", err)
		}
		ev = &keystore.Evidence{
			EKCert:           ek.cert,
			EKPublic:         ek.public,
			AKPublic:         ak.OutPublic.Bytes(),
			KeyPublic:        s.pubRaw,
			CertifyInfo:      cert.CertifyInfo.Bytes(),
			CertifySignature: tpm2.Marshal(cert.Signature),
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return ev, nil
}

// ensureLoadedForAttest makes sure the device key is loaded: Attest needs
// Signer or Generate to have been called first.
func (s *Store) ensureLoadedForAttest(tp transport.TPM) error {
	if s.blob == nil && s.uri.Handle == 0 {
		return errors.New("tpm: attest: open the key first (Signer or Generate)")
	}
	if s.uri.Handle != 0 && s.name.Buffer == nil {
		return errors.New("tpm: attest: open the key first (Signer or Generate)")
	}
	return s.ensureLoaded(tp)
}

// ActivateCredential recovers the secret sealed to this TPM's EK for its
// AK's name.
func (s *Store) ActivateCredential(ctx context.Context, credentialBlob, encryptedSecret []byte) ([]byte, error) {
	var secret []byte
	err := s.t.do(ctx, func(tp transport.TPM) error {
		ek, err := s.t.loadEK(tp)
		if err != nil {
			return err
		}
		defer ek.flush(tp)
		ak, err := createAK(tp)
		if err != nil {
			return err
		}
		defer flush(tp, ak.ObjectHandle)
		rsp, err := tpm2.ActivateCredential{
			ActivateHandle: tpm2.AuthHandle{Handle: ak.ObjectHandle, Name: ak.Name, Auth: tpm2.PasswordAuth(nil)},
			KeyHandle: tpm2.AuthHandle{
				Handle: ek.handle,
				Name:   ek.name,
				Auth:   tpm2.Policy(tpm2.TPMAlgSHA256, 16, ekPolicy),
			},
			CredentialBlob: tpm2.TPM2BIDObject{Buffer: credentialBlob},
			Secret:         tpm2.TPM2BEncryptedSecret{Buffer: encryptedSecret},
		}.Execute(tp)
		if err != nil {
			return fmt.Errorf("tpm: activate credential (the challenge was not made for this TPM's keys): %w", err)
		}
		secret = rsp.CertInfo.Buffer
		return nil
	})
	return secret, err
}

// ekPolicy satisfies the TCG EK policy: PolicySecret(TPM_RH_ENDORSEMENT).
func ekPolicy(tp transport.TPM, handle tpm2.TPMISHPolicy, nonceTPM tpm2.TPM2BNonce) error {
	_, err := tpm2.PolicySecret{
		AuthHandle:    tpm2.AuthHandle{Handle: tpm2.TPMRHEndorsement, Auth: tpm2.PasswordAuth(nil)},
		PolicySession: handle,
		NonceTPM:      nonceTPM,
	}.Execute(tp)
	return err
}

func createAK(tp transport.TPM) (*tpm2.CreatePrimaryResponse, error) {
	rsp, err := tpm2.CreatePrimary{
		PrimaryHandle: tpm2.AuthHandle{Handle: tpm2.TPMRHEndorsement, Auth: tpm2.PasswordAuth(nil)},
		InPublic:      tpm2.New2B(akTemplate),
	}.Execute(tp)
	if err != nil {
		return nil, fmt.Errorf("tpm: create attestation key: %w", err)
	}
	return rsp, nil
}

// loadEK finds the first EK whose certificate is in NV and makes its key
// usable: the persistent one the maker left, or the same key made again
// from the TCG template.
func (t *TPM) loadEK(tp transport.TPM) (*loadedEK, error) {
	for _, spec := range ekSpecs {
		cert, err := t.readNV(tp, spec.certIndex)
		if errors.Is(err, tpm2.TPMRCHandle) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("tpm: read the %s EK certificate: %w", spec.kind, err)
		}
		// NV areas may be larger than the DER they hold: keep the DER.
		var raw asn1.RawValue
		if _, err := asn1.Unmarshal(cert, &raw); err != nil {
			return nil, fmt.Errorf("tpm: the %s EK certificate at 0x%08x is not DER: %w", spec.kind, uint32(spec.certIndex), err)
		}
		ek := &loadedEK{cert: raw.FullBytes}
		if rp, err := (tpm2.ReadPublic{ObjectHandle: spec.persistent}).Execute(tp); err == nil {
			ek.handle, ek.name, ek.public = spec.persistent, rp.Name, rp.OutPublic.Bytes()
			return ek, nil
		}
		cp, err := tpm2.CreatePrimary{
			PrimaryHandle: tpm2.AuthHandle{Handle: tpm2.TPMRHEndorsement, Auth: tpm2.PasswordAuth(nil)},
			InPublic:      tpm2.New2B(spec.template),
		}.Execute(tp)
		if err != nil {
			return nil, fmt.Errorf("tpm: create the %s EK: %w", spec.kind, err)
		}
		ek.handle, ek.name, ek.public, ek.transient = cp.ObjectHandle, cp.Name, cp.OutPublic.Bytes(), true
		return ek, nil
	}
	return nil, fmt.Errorf("tpm: %s: %w", t.where, ErrNoEKCert)
}

func (ek *loadedEK) flush(tp transport.TPM) {
	if ek.transient {
		flush(tp, ek.handle)
	}
}

// readNV reads a whole NV index in pieces of TPM_PT_NV_BUFFER_MAX, the
// most this TPM moves in one NV_Read. It authorises with the index's own
// (empty) auth value, or with the owner's when the index does not allow
// that.
func (t *TPM) readNV(tp transport.TPM, index tpm2.TPMHandle) ([]byte, error) {
	rp, err := (tpm2.NVReadPublic{NVIndex: index}).Execute(tp)
	if err != nil {
		return nil, err
	}
	pub, err := rp.NVPublic.Contents()
	if err != nil {
		return nil, err
	}
	auth := tpm2.AuthHandle{Handle: index, Name: rp.NVName, Auth: tpm2.PasswordAuth(nil)}
	if !pub.Attributes.AuthRead && pub.Attributes.OwnerRead {
		auth = tpm2.AuthHandle{Handle: tpm2.TPMRHOwner, Auth: tpm2.PasswordAuth(nil)}
	}
	chunk := t.info.NVBufferMax
	out := make([]byte, 0, pub.DataSize)
	for off := 0; off < int(pub.DataSize); off += chunk {
		n := min(chunk, int(pub.DataSize)-off)
		rsp, err := tpm2.NVRead{
			AuthHandle: auth,
			NVIndex:    tpm2.NamedHandle{Handle: index, Name: rp.NVName},
			Size:       uint16(n),
			Offset:     uint16(off),
		}.Execute(tp)
		if err != nil {
			return nil, fmt.Errorf("NV read of 0x%08x at %d: %w", uint32(index), off, err)
		}
		out = append(out, rsp.Data.Buffer...)
	}
	return out, nil
}
