package ca

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/x509"
	"encoding/asn1"
	"errors"
	"fmt"
	"math/big"
	"net/http"

	"github.com/dcagent/dcagent/crypto/enroll"
	"github.com/dcagent/dcagent/crypto/keystore"
	"github.com/google/go-tpm/tpm2"
)

// The verifier's half of TPM attestation (the device's is in crypto/tpm).
// What each check stops:
//
//   - EK certificate chains to a TPM maker: a software "TPM" has none.
//   - EK public area = EK certificate's key: the device cannot swap in an
//     EK of its own making.
//   - AK is restricted, fixedTPM: only the TPM's own structures are signed.
//   - The certify structure is signed by the AK, starts with
//     TPM_GENERATED_VALUE, is of type ATTEST_CERTIFY, and carries
//     SHA-256(CSR) as extra data: it is fresh for this request.
//   - The certified name is the hash of the key public area the device
//     sent, whose attributes say fixedTPM, fixedParent,
//     sensitiveDataOrigin: the TPM made the key and will not let it out.
//     A software key imported into a TPM never has fixedTPM.
//   - That public area holds the CSR's key.
//   - Finally the credential, encrypted to the EK for the AK's name, comes
//     back decrypted: EK and AK live in one TPM.

var oidSubjectAltName = asn1.ObjectIdentifier{2, 5, 29, 17}

// verifiedEvidence is what a verified attestation leaves for the
// credential challenge.
type verifiedEvidence struct {
	ekPub             *tpm2.TPMTPublic
	akName            []byte
	ekCertFingerprint string
}

func attErr(format string, args ...any) *AuthError {
	return apiErr(http.StatusForbidden, enroll.CodeAttestationInvalid, format, args...)
}

// verifyEvidence checks everything but the credential activation.
func (ca *CA) verifyEvidence(ev *keystore.Evidence, csrPub crypto.PublicKey, qualifying []byte) (*verifiedEvidence, error) {
	if ca.tpmRoots == nil {
		return nil, apiErr(http.StatusForbidden, enroll.CodeAttestationInvalid, "this backend has no TPM makers' roots to check attestation against")
	}
	// 1. The EK certificate, from a known maker.
	ekCert, err := x509.ParseCertificate(ev.EKCert)
	if err != nil {
		return nil, attErr("EK certificate: %v", err)
	}
	// TCG EK certificates carry a critical subject alternative name of
	// TPM attributes (a directoryName), which x509 leaves unhandled.
	var unhandled []asn1.ObjectIdentifier
	for _, oid := range ekCert.UnhandledCriticalExtensions {
		if !oid.Equal(oidSubjectAltName) {
			unhandled = append(unhandled, oid)
		}
	}
	ekCert.UnhandledCriticalExtensions = unhandled
	if _, err := ekCert.Verify(x509.VerifyOptions{Roots: ca.tpmRoots, Intermediates: ca.tpmInter, CurrentTime: ca.now(), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
		return nil, attErr("the EK certificate (issuer %q) is not from a known TPM maker: %v", ekCert.Issuer.String(), err)
	}
	// 2. The EK public area holds the certified key.
	ekPub, err := exact[tpm2.TPMTPublic](ev.EKPublic)
	if err != nil {
		return nil, attErr("EK public area: %v", err)
	}
	ekKey, err := tpm2.Pub(*ekPub)
	if err != nil {
		return nil, attErr("EK public area: %v", err)
	}
	if !publicEqual(ekKey, ekCert.PublicKey) {
		return nil, attErr("the EK public area is not the key of the EK certificate")
	}
	if a := ekPub.ObjectAttributes; !a.Restricted || !a.Decrypt || !a.FixedTPM || !a.FixedParent {
		return nil, attErr("the EK public area does not describe an endorsement key (restricted decryption, fixedTPM)")
	}
	// 3. The AK.
	akPub, err := exact[tpm2.TPMTPublic](ev.AKPublic)
	if err != nil {
		return nil, attErr("AK public area: %v", err)
	}
	if a := akPub.ObjectAttributes; !a.Restricted || !a.SignEncrypt || a.Decrypt || !a.FixedTPM || !a.FixedParent || !a.SensitiveDataOrigin {
		return nil, attErr("the AK is not a restricted signing key fixed to its TPM")
	}
	akKey, err := tpm2.Pub(*akPub)
	if err != nil {
		return nil, attErr("AK public area: %v", err)
	}
	akName, err := tpm2.ObjectName(akPub)
	if err != nil {
		return nil, attErr("AK name: %v", err)
	}
	// 4. The AK signed the certify structure.
	sig, err := exact[tpm2.TPMTSignature](ev.CertifySignature)
	if err != nil {
		return nil, attErr("certify signature: %v", err)
	}
	if err := verifyTPMSignature(akKey, sig, ev.CertifyInfo); err != nil {
		return nil, attErr("the certify structure is not signed by the AK: %v", err)
	}
	attest, err := exact[tpm2.TPMSAttest](ev.CertifyInfo)
	if err != nil {
		return nil, attErr("certify structure: %v", err)
	}
	if attest.Magic != tpm2.TPMGeneratedValue || attest.Type != tpm2.TPMSTAttestCertify {
		return nil, attErr("the signed structure is not a TPM-made certification")
	}
	if !bytes.Equal(attest.ExtraData.Buffer, qualifying) {
		return nil, attErr("the certification was made for another request (its qualifying data is not SHA-256 of this CSR)")
	}
	info, err := attest.Attested.Certify()
	if err != nil {
		return nil, attErr("certify structure: %v", err)
	}
	// 5. The certified key is the one described, made in the TPM.
	keyPub, err := exact[tpm2.TPMTPublic](ev.KeyPublic)
	if err != nil {
		return nil, attErr("device key public area: %v", err)
	}
	keyName, err := tpm2.ObjectName(keyPub)
	if err != nil {
		return nil, attErr("device key name: %v", err)
	}
	if !bytes.Equal(info.Name.Buffer, keyName.Buffer) {
		return nil, attErr("the TPM certified another key than the public area sent")
	}
	if a := keyPub.ObjectAttributes; !a.FixedTPM || !a.FixedParent || !a.SensitiveDataOrigin {
		return nil, attErr("the device key was not made inside the TPM or can leave it (fixedTPM, fixedParent or sensitiveDataOrigin clear): a software key cannot enroll as a TPM key")
	}
	if a := keyPub.ObjectAttributes; !a.SignEncrypt || a.Restricted {
		return nil, attErr("the device key is not an unrestricted signing key")
	}
	// 6. It is the CSR's key.
	key, err := tpm2.Pub(*keyPub)
	if err != nil {
		return nil, attErr("device key public area: %v", err)
	}
	if !publicEqual(key, csrPub) {
		return nil, apiErr(http.StatusForbidden, enroll.CodeKeyMismatch, "the CSR is signed by another key than the one the TPM certified")
	}
	sum := sha256.Sum256(ekCert.Raw)
	return &verifiedEvidence{ekPub: ekPub, akName: akName.Buffer, ekCertFingerprint: fmt.Sprintf("sha256:%x", sum)}, nil
}

// makeCredential encrypts secret to the EK for the AK's name.
func makeCredential(v *verifiedEvidence, secret []byte, rnd func([]byte) (int, error)) (blob, encSecret []byte, err error) {
	key, err := tpm2.ImportEncapsulationKey(v.ekPub)
	if err != nil {
		return nil, nil, fmt.Errorf("EK cannot take a credential: %w", err)
	}
	return tpm2.CreateCredential(readerFunc(rnd), key, v.akName, secret)
}

type readerFunc func([]byte) (int, error)

func (f readerFunc) Read(p []byte) (int, error) { return f(p) }

func verifyTPMSignature(pub crypto.PublicKey, sig *tpm2.TPMTSignature, data []byte) error {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		if sig.SigAlg != tpm2.TPMAlgECDSA {
			return fmt.Errorf("signature algorithm %v for an ECC key", sig.SigAlg)
		}
		e, err := sig.Signature.ECDSA()
		if err != nil {
			return err
		}
		digest, err := tpmDigest(e.Hash, data)
		if err != nil {
			return err
		}
		if !ecdsa.Verify(k, digest, new(big.Int).SetBytes(e.SignatureR.Buffer), new(big.Int).SetBytes(e.SignatureS.Buffer)) {
			return errors.New("bad ECDSA signature")
		}
		return nil
	case *rsa.PublicKey:
		if sig.SigAlg != tpm2.TPMAlgRSASSA {
			return fmt.Errorf("signature algorithm %v for an RSA key", sig.SigAlg)
		}
		r, err := sig.Signature.RSASSA()
		if err != nil {
			return err
		}
		digest, err := tpmDigest(r.Hash, data)
		if err != nil {
			return err
		}
		h := crypto.SHA256
		if r.Hash == tpm2.TPMAlgSHA384 {
			h = crypto.SHA384
		}
		return rsa.VerifyPKCS1v15(k, h, digest, r.Sig.Buffer)
	}
	return fmt.Errorf("AK key type %T", pub)
}

func tpmDigest(alg tpm2.TPMIAlgHash, data []byte) ([]byte, error) {
	switch alg {
	case tpm2.TPMAlgSHA256:
		s := sha256.Sum256(data)
		return s[:], nil
	case tpm2.TPMAlgSHA384:
		s := sha512.Sum384(data)
		return s[:], nil
	}
	return nil, fmt.Errorf("hash algorithm %v not accepted", alg)
}

// exact parses a TPM structure that must fill data to the last byte:
// go-tpm's Unmarshal ignores what follows, and evidence with bytes
// nobody checked is refused.
func exact[T tpm2.Marshallable, P interface {
	*T
	tpm2.Unmarshallable
}](data []byte) (*T, error) {
	v, err := tpm2.Unmarshal[T, P](data)
	if err != nil {
		return nil, err
	}
	if !bytes.Equal(tpm2.Marshal(*v), data) {
		return nil, errors.New("trailing or non-canonical bytes")
	}
	return v, nil
}

func publicEqual(a, b crypto.PublicKey) bool {
	k, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	return ok && k.Equal(b)
}
