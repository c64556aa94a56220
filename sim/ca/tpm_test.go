package ca

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dcagent/dcagent/crypto/enroll"
	"github.com/dcagent/dcagent/crypto/identity"
	"github.com/dcagent/dcagent/crypto/keystore"
	"github.com/dcagent/dcagent/crypto/tlsconf"
	"github.com/dcagent/dcagent/crypto/tpm"
	"github.com/dcagent/dcagent/internal/realparts"
	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"
)

// TestEnrollWithSWTPM: a key made in a real swtpm, a CSR it signed,
// enrollment with TPM attestation at a backend that requires it (EK
// certificate from the swtpm local CA standing in for the TPM maker, AK
// certified key, credential activated), a mutual-TLS request accepted,
// and a renewal signed by the same key.
func TestEnrollWithSWTPM(t *testing.T) {
	sw := realparts.SWTPMWithEKForTest(t, "")
	roots, err := sw.ManufacturerRootsFile()
	if err != nil {
		t.Fatal(err)
	}
	b := startBackend(t, Config{RequireTPM: true, TPMRootsFile: roots})
	cfg := agentConfig(t, b, sw.URI("device"), t.TempDir(), "SYS-TPM-1")
	id := enrollDevice(t, b, cfg)
	if got, err := ping(id, b); err != nil || got != "hello SYS-TPM-1" {
		t.Fatalf("ping: %q, %v", got, err)
	}
	d, ok := b.ca.Device("SYS-TPM-1")
	if !ok || !d.TPMAttested {
		t.Fatalf("device record %+v: not marked TPM-attested", d)
	}
	if !strings.Contains(b.logs.String(), "TPM attestation verified") {
		t.Error("the backend did not log the attestation")
	}
	if err := id.RenewNow(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got, err := ping(id, b); err != nil || got != "hello SYS-TPM-1" {
		t.Fatalf("ping after renewal: %q, %v", got, err)
	}
	if _, ok := id.Store().(keystore.CounterStore); !ok {
		t.Error("the TPM store offers no counters")
	}
}

// TestCopiedDeviceTPM: the whole state directory of an enrolled device,
// copied to a second machine with a TPM of its own, cannot authenticate,
// and says why. Even given the first device's certificate and a key of
// its own, the second machine fails the TLS handshake.
func TestCopiedDeviceTPM(t *testing.T) {
	mfr := t.TempDir()
	swA := realparts.SWTPMWithEKForTest(t, mfr)
	swB := realparts.SWTPMWithEKForTest(t, mfr)
	roots, _ := swA.ManufacturerRootsFile()
	b := startBackend(t, Config{RequireTPM: true, TPMRootsFile: roots})
	stateA := filepath.Join(t.TempDir(), "state")
	cfgA := agentConfig(t, b, swA.URI("device"), stateA, "SYS-COPY")
	idA := enrollDevice(t, b, cfgA)
	if _, err := ping(idA, b); err != nil {
		t.Fatal(err)
	}

	stateB := filepath.Join(t.TempDir(), "state")
	if err := os.CopyFS(stateB, os.DirFS(stateA)); err != nil {
		t.Fatal(err)
	}
	cfgB := *cfgA
	cfgB.Device.StateDir = stateB
	cfgB.Backend.CAFile = filepath.Join(stateB, "vendor-ca.pem")
	cfgB.Identity.KeyURI = swB.URI("device") // machine B's own TPM
	_, err := identity.Load(context.Background(), &cfgB, identity.Options{})
	if !errors.Is(err, keystore.ErrForeignKey) || !strings.Contains(err.Error(), "copied") {
		t.Fatalf("load a copied state directory: %v", err)
	}

	// Machine B makes a key of its own; the copied certificate is not for
	// it, and Load says so.
	if err := os.Remove(filepath.Join(stateB, "keys", "device.tpmkey")); err != nil {
		t.Fatal(err)
	}
	sB, err := keystore.Open(context.Background(), cfgB.Identity.KeyURI, keystore.Options{StateDir: stateB})
	if err != nil {
		t.Fatal(err)
	}
	defer sB.Close()
	kB, err := sB.Generate(context.Background(), keystore.ECCP256)
	if err != nil {
		t.Fatal(err)
	}
	_, err = identity.Load(context.Background(), &cfgB, identity.Options{})
	if !errors.Is(err, identity.ErrCopiedState) {
		t.Fatalf("load a copied certificate with another key: %v", err)
	}
	// And the backend refuses the copied certificate with B's key.
	chain, err := identity.LoadChain(stateB)
	if err != nil {
		t.Fatal(err)
	}
	cli, _ := tlsconf.Client(b.ca.Pool(), &tls.Certificate{Certificate: [][]byte{chain[0].Raw}, PrivateKey: kB}, "127.0.0.1")
	c := &http.Client{Transport: &http.Transport{TLSClientConfig: cli}, Timeout: 20 * time.Second}
	defer c.CloseIdleConnections()
	if rsp, err := c.Get(b.url + "/v1/ping"); err == nil {
		rsp.Body.Close()
		t.Fatalf("the copied certificate with another key got status %d", rsp.StatusCode)
	}
}

// TestTPMAttestationRejections: what a device without a genuine TPM key
// might try, each refused with a reason.
func TestTPMAttestationRejections(t *testing.T) {
	mfr := t.TempDir()
	swA := realparts.SWTPMWithEKForTest(t, mfr)
	swB := realparts.SWTPMWithEKForTest(t, mfr)
	roots, _ := swA.ManufacturerRootsFile()
	b := startBackend(t, Config{RequireTPM: true, TPMRootsFile: roots})
	ctx := context.Background()

	storeA, err := tpm.OpenStore(ctx, swA.URI("device"), keystore.Options{StateDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer storeA.Close()
	keyA, err := storeA.Generate(ctx, keystore.ECCP256)
	if err != nil {
		t.Fatal(err)
	}

	t.Run("CSR signed by one key, attestation for another", func(t *testing.T) {
		soft, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		csr, _ := enroll.CreateCSR(enroll.Device{SystemID: "SYS-M", Signer: soft})
		ev, err := storeA.Attest(ctx, enroll.QualifyingData(csr))
		if err != nil {
			t.Fatal(err)
		}
		tok, _ := b.ca.NewToken("SYS-M", time.Hour)
		status, body := postAnon(t, b, enroll.EnrollRequest{Token: tok, CSR: csr, Attestation: ev})
		if status != http.StatusForbidden || body.Code != enroll.CodeKeyMismatch {
			t.Fatalf("got %d %+v", status, body)
		}
	})

	t.Run("attestation made for another CSR", func(t *testing.T) {
		csr1, _ := enroll.CreateCSR(enroll.Device{SystemID: "SYS-Q", Signer: keyA})
		csr2, _ := enroll.CreateCSR(enroll.Device{SystemID: "SYS-Q", Model: "other", Signer: keyA})
		ev, err := storeA.Attest(ctx, enroll.QualifyingData(csr1))
		if err != nil {
			t.Fatal(err)
		}
		tok, _ := b.ca.NewToken("SYS-Q", time.Hour)
		status, body := postAnon(t, b, enroll.EnrollRequest{Token: tok, CSR: csr2, Attestation: ev})
		if status != http.StatusForbidden || body.Code != enroll.CodeAttestationInvalid || !strings.Contains(body.Error, "another request") {
			t.Fatalf("got %d %+v", status, body)
		}
	})

	t.Run("software key loaded into the TPM", func(t *testing.T) {
		// The attacker's own key, loaded into a genuine TPM with
		// TPM2_LoadExternal and certified by its genuine AK. The TPM
		// refuses fixedTPM on an external key, and the backend refuses a
		// key without it.
		soft, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		csr, _ := enroll.CreateCSR(enroll.Device{SystemID: "SYS-E", Signer: soft})
		genuine, err := storeA.Attest(ctx, enroll.QualifyingData(csr)) // EK cert, EK and AK of TPM A
		if err != nil {
			t.Fatal(err)
		}
		ev := certifyExternal(t, storeA.TPM(), genuine, soft, enroll.QualifyingData(csr))
		tok, _ := b.ca.NewToken("SYS-E", time.Hour)
		status, body := postAnon(t, b, enroll.EnrollRequest{Token: tok, CSR: csr, Attestation: ev})
		if status != http.StatusForbidden || body.Code != enroll.CodeAttestationInvalid || !strings.Contains(body.Error, "software key cannot enroll as a TPM key") {
			t.Fatalf("got %d %+v", status, body)
		}
	})

	t.Run("EK of one TPM, AK and key of another", func(t *testing.T) {
		storeB, err := tpm.OpenStore(ctx, swB.URI("device"), keystore.Options{StateDir: t.TempDir()})
		if err != nil {
			t.Fatal(err)
		}
		defer storeB.Close()
		keyB, err := storeB.Generate(ctx, keystore.ECCP256)
		if err != nil {
			t.Fatal(err)
		}
		csr, _ := enroll.CreateCSR(enroll.Device{SystemID: "SYS-X2", Signer: keyB})
		evA, err := storeA.Attest(ctx, enroll.QualifyingData(csr))
		if err != nil {
			t.Fatal(err)
		}
		evB, err := storeB.Attest(ctx, enroll.QualifyingData(csr))
		if err != nil {
			t.Fatal(err)
		}
		mixed := *evB
		mixed.EKCert, mixed.EKPublic = evA.EKCert, evA.EKPublic
		tok, _ := b.ca.NewToken("SYS-X2", time.Hour)
		c := &http.Client{Transport: &http.Transport{TLSClientConfig: mustClient(t, b)}, Timeout: 20 * time.Second}
		defer c.CloseIdleConnections()
		rsp := postJSON(t, c, b.url+enroll.PathEnroll, enroll.EnrollRequest{Token: tok, CSR: csr, Attestation: &mixed})
		if rsp.Challenge == nil {
			t.Fatalf("no challenge: %+v", rsp)
		}
		// TPM B cannot open a credential made for TPM A's EK.
		if _, err := storeB.ActivateCredential(ctx, rsp.Challenge.CredentialBlob, rsp.Challenge.EncryptedSecret); err == nil {
			t.Fatal("TPM B activated a credential made for TPM A's EK")
		}
		guess := make([]byte, 32)
		_, _ = rand.Read(guess)
		status, body := postAnon(t, b, enroll.EnrollRequest{Token: tok, ChallengeID: rsp.Challenge.ID, Secret: guess})
		if status != http.StatusForbidden || body.Code != enroll.CodeChallengeFailed || !strings.Contains(body.Error, "not in one TPM") {
			t.Fatalf("wrong answer: %d %+v", status, body)
		}
		// One answer per challenge.
		status, body = postAnon(t, b, enroll.EnrollRequest{Token: tok, ChallengeID: rsp.Challenge.ID, Secret: guess})
		if body.Code != enroll.CodeChallengeUnknown {
			t.Fatalf("second answer: %d %+v", status, body)
		}
		if err := b.ca.checkToken(tok, "SYS-X2"); err != nil {
			t.Fatalf("the failed attempt used up the token: %v", err)
		}
	})

	t.Run("TPM from an unknown maker", func(t *testing.T) {
		swC := realparts.SWTPMWithEKForTest(t, "") // a maker of its own
		cfg := agentConfig(t, b, swC.URI("device"), t.TempDir(), "SYS-U")
		tok, _ := b.ca.NewToken("SYS-U", time.Hour)
		_, err := identity.Enroll(ctx, cfg, tok, identity.EnrollOptions{GenerateKey: true})
		if serverCode(err) != enroll.CodeAttestationInvalid || !strings.Contains(err.Error(), "not from a known TPM maker") {
			t.Fatalf("got %v", err)
		}
	})
}

func postJSON(t *testing.T, c *http.Client, url string, in any) *enroll.Response {
	t.Helper()
	data, _ := json.Marshal(in)
	rsp, err := c.Post(url, "application/json", bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	defer rsp.Body.Close()
	var out enroll.Response
	if err := json.NewDecoder(rsp.Body).Decode(&out); err != nil || rsp.StatusCode != 200 {
		t.Fatalf("status %d, %v", rsp.StatusCode, err)
	}
	return &out
}

// certifyExternal loads soft into the TPM with TPM2_LoadExternal and has
// the TPM's AK (the same primary the store makes) certify it: the best a
// device without a TPM-made key can do.
func certifyExternal(t *testing.T, shared *tpm.TPM, genuine *keystore.Evidence, soft *ecdsa.PrivateKey, qd []byte) *keystore.Evidence {
	t.Helper()
	pub := tpm2.TPMTPublic{
		Type:             tpm2.TPMAlgECC,
		NameAlg:          tpm2.TPMAlgSHA256,
		ObjectAttributes: tpm2.TPMAObject{SignEncrypt: true, UserWithAuth: true, NoDA: true},
		Parameters: tpm2.NewTPMUPublicParms(tpm2.TPMAlgECC, &tpm2.TPMSECCParms{
			CurveID: tpm2.TPMECCNistP256, Scheme: tpm2.TPMTECCScheme{Scheme: tpm2.TPMAlgNull},
			KDF: tpm2.TPMTKDFScheme{Scheme: tpm2.TPMAlgNull}, Symmetric: tpm2.TPMTSymDefObject{Algorithm: tpm2.TPMAlgNull},
		}),
		Unique: tpm2.NewTPMUPublicID(tpm2.TPMAlgECC, &tpm2.TPMSECCPoint{
			X: tpm2.TPM2BECCParameter{Buffer: soft.X.FillBytes(make([]byte, 32))},
			Y: tpm2.TPM2BECCParameter{Buffer: soft.Y.FillBytes(make([]byte, 32))},
		}),
	}
	akPub, err := tpm2.Unmarshal[tpm2.TPMTPublic](genuine.AKPublic)
	if err != nil {
		t.Fatal(err)
	}
	akTmpl := *akPub
	akTmpl.Unique = tpm2.NewTPMUPublicID(tpm2.TPMAlgECC, &tpm2.TPMSECCPoint{})
	var ev *keystore.Evidence
	err = shared.Do(context.Background(), func(tp transport.TPM) error {
		ext, err := tpm2.LoadExternal{
			InPrivate: tpm2.New2B(tpm2.TPMTSensitive{
				SensitiveType: tpm2.TPMAlgECC,
				Sensitive:     tpm2.NewTPMUSensitiveComposite(tpm2.TPMAlgECC, &tpm2.TPM2BECCParameter{Buffer: soft.D.FillBytes(make([]byte, 32))}),
			}),
			InPublic:  tpm2.New2B(pub),
			Hierarchy: tpm2.TPMRHNull,
		}.Execute(tp)
		if err != nil {
			return err
		}
		defer (tpm2.FlushContext{FlushHandle: ext.ObjectHandle}).Execute(tp)
		ak, err := tpm2.CreatePrimary{
			PrimaryHandle: tpm2.AuthHandle{Handle: tpm2.TPMRHEndorsement, Auth: tpm2.PasswordAuth(nil)},
			InPublic:      tpm2.New2B(akTmpl),
		}.Execute(tp)
		if err != nil {
			return err
		}
		defer (tpm2.FlushContext{FlushHandle: ak.ObjectHandle}).Execute(tp)
		cert, err := tpm2.Certify{
			ObjectHandle:   tpm2.AuthHandle{Handle: ext.ObjectHandle, Name: ext.Name, Auth: tpm2.PasswordAuth(nil)},
			SignHandle:     tpm2.AuthHandle{Handle: ak.ObjectHandle, Name: ak.Name, Auth: tpm2.PasswordAuth(nil)},
			QualifyingData: tpm2.TPM2BData{Buffer: qd},
			InScheme:       tpm2.TPMTSigScheme{Scheme: tpm2.TPMAlgNull},
		}.Execute(tp)
		if err != nil {
			return err
		}
		ev = &keystore.Evidence{
			EKCert: genuine.EKCert, EKPublic: genuine.EKPublic, AKPublic: ak.OutPublic.Bytes(),
			KeyPublic: tpm2.Marshal(pub), CertifyInfo: cert.CertifyInfo.Bytes(), CertifySignature: tpm2.Marshal(cert.Signature),
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return ev
}
