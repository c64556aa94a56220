package enroll

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"math/big"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/dcagent/dcagent/crypto/keystore"
	"github.com/dcagent/dcagent/crypto/tlsconf"
	"github.com/dcagent/dcagent/internal/testpki"
)

func TestCreateCSR(t *testing.T) {
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, err := CreateCSR(Device{SystemID: "SYS-1", Model: "DC-9000", Signer: k})
	if err != nil {
		t.Fatal(err)
	}
	csr, err := x509.ParseCertificateRequest(der)
	if err != nil {
		t.Fatal(err)
	}
	if csr.CheckSignature() != nil || csr.Subject.CommonName != "SYS-1" || csr.Subject.OrganizationalUnit[0] != "DC-9000" {
		t.Fatalf("CSR %+v", csr.Subject)
	}
	if _, err := CreateCSR(Device{Signer: k}); err == nil {
		t.Error("a CSR without system ID")
	}
	if len(QualifyingData(der)) != 32 {
		t.Error("qualifying data is not a SHA-256")
	}
}

func TestVerifyChain(t *testing.T) {
	ca := testpki.NewCA(t, "vendor")
	other := testpki.NewCA(t, "other")
	dev := ca.Device(t, "SYS-1")
	chain := string(EncodeChain([]*x509.Certificate{dev.Leaf, ca.Cert}))
	pub := dev.PrivateKey.(*ecdsa.PrivateKey).Public()
	if _, err := VerifyChain(chain, ca.Pool, pub, "SYS-1", time.Now()); err != nil {
		t.Fatal(err)
	}
	k2, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	for name, tc := range map[string]struct {
		roots *x509.CertPool
		pub   any
		id    string
		want  string
	}{
		"another CA":  {other.Pool, pub, "SYS-1", "pinned vendor CA"},
		"another ID":  {ca.Pool, pub, "SYS-2", "names \"SYS-1\""},
		"another key": {ca.Pool, &k2.PublicKey, "SYS-1", "another key"},
	} {
		if _, err := VerifyChain(chain, tc.roots, tc.pub, tc.id, time.Now()); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v", name, err)
		}
	}
	srv := ca.Server(t) // a server certificate is not for client authentication
	if _, err := VerifyChain(string(EncodeChain([]*x509.Certificate{srv.Leaf})), ca.Pool, srv.Leaf.PublicKey, "localhost", time.Now()); err == nil {
		t.Error("a server certificate passed as a device certificate")
	}
	if _, err := ParseChain([]byte("no pem")); err == nil {
		t.Error("empty chain parsed")
	}
	if _, err := ParseChain([]byte("-----BEGIN PRIVATE KEY-----\nAA==\n-----END PRIVATE KEY-----\n")); err == nil {
		t.Error("a key parsed as a chain")
	}
}

func FuzzParseChain(f *testing.F) {
	ca := testpki.NewCA(f, "vendor")
	dev := ca.Device(f, "SYS-1")
	f.Add(EncodeChain([]*x509.Certificate{dev.Leaf, ca.Cert}))
	f.Add([]byte("-----BEGIN CERTIFICATE-----\nMAA=\n-----END CERTIFICATE-----\n"))
	f.Fuzz(func(t *testing.T, in []byte) {
		chain, err := ParseChain(in)
		if err != nil {
			return
		}
		again, err := ParseChain(EncodeChain(chain))
		if err != nil || len(again) != len(chain) {
			t.Fatalf("a parsed chain does not survive encoding: %v", err)
		}
	})
}

func TestBackendURL(t *testing.T) {
	for _, u := range []string{"http://127.0.0.1:1", "https://", "::bad"} {
		if _, err := (&Backend{URL: u}).serverName(); err == nil {
			t.Errorf("%q accepted", u)
		}
	}
	if _, err := (&Backend{URL: "https://127.0.0.1:1"}).client(nil); err == nil {
		t.Error("a backend without pinned CA accepted")
	}
}

// TestServerErrors: what the client makes of answers that are refusals,
// failures, or not ours.
func TestServerErrors(t *testing.T) {
	ca := testpki.NewCA(t, "vendor")
	answers := map[string]func(w http.ResponseWriter){
		"refusal": func(w http.ResponseWriter) {
			w.WriteHeader(401)
			json.NewEncoder(w).Encode(ErrorBody{Code: CodeTokenUsed, Error: "the token was used already"})
		},
		"overload":    func(w http.ResponseWriter) { http.Error(w, "busy", 503) },
		"not json":    func(w http.ResponseWriter) { w.Write([]byte("<html>")) },
		"empty chain": func(w http.ResponseWriter) { json.NewEncoder(w).Encode(Response{}) },
	}
	var which string
	l, err := tls.Listen("tcp", "127.0.0.1:0", tlsconf.Server(ca.Server(t), nil, false))
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { answers[which](w) })}
	go srv.Serve(l)
	defer srv.Close()
	b := &Backend{URL: "https://" + l.Addr().String(), Roots: ca.Pool, Timeout: 10 * time.Second}
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	d := Device{SystemID: "SYS-1", Signer: k}

	which = "refusal"
	_, err = Enroll(context.Background(), b, d, "dct1_x", nil)
	var se *ServerError
	if !errors.As(err, &se) || se.Code != CodeTokenUsed || se.Retryable() || !strings.Contains(err.Error(), "used already") {
		t.Errorf("refusal: %v", err)
	}
	which = "overload"
	_, err = Enroll(context.Background(), b, d, "dct1_x", nil)
	if !errors.As(err, &se) || !se.Retryable() || se.Status != 503 {
		t.Errorf("overload: %v", err)
	}
	which = "not json"
	if _, err = Enroll(context.Background(), b, d, "dct1_x", nil); err == nil || !strings.Contains(err.Error(), "not JSON") {
		t.Errorf("not JSON: %v", err)
	}
	which = "empty chain"
	if _, err = Enroll(context.Background(), b, d, "dct1_x", nil); err == nil || !strings.Contains(err.Error(), "no certificate") {
		t.Errorf("empty chain: %v", err)
	}
	if _, err = Enroll(context.Background(), b, d, "", nil); err == nil {
		t.Error("enroll without a token")
	}
	// A challenge when the device has no TPM.
	answers["challenge"] = func(w http.ResponseWriter) {
		json.NewEncoder(w).Encode(Response{Challenge: &Challenge{ID: "x"}})
	}
	which = "challenge"
	if _, err = Enroll(context.Background(), b, d, "dct1_x", nil); err == nil || !strings.Contains(err.Error(), "no TPM") {
		t.Errorf("challenge without TPM: %v", err)
	}
	// The backend with a certificate from another CA is not reached.
	other := testpki.NewCA(t, "other")
	b2 := &Backend{URL: b.URL, Roots: other.Pool}
	if _, err := Enroll(context.Background(), b2, d, "dct1_x", nil); err == nil || !strings.Contains(err.Error(), "unknown authority") {
		t.Errorf("backend from another CA: %v", err)
	}
}

// attesterFunc lets a test stand in for a TPM.
type attesterFunc struct {
	attest   func([]byte) (*keystore.Evidence, error)
	activate func(blob, secret []byte) ([]byte, error)
}

func (a attesterFunc) Attest(_ context.Context, qd []byte) (*keystore.Evidence, error) {
	return a.attest(qd)
}

func (a attesterFunc) ActivateCredential(_ context.Context, blob, secret []byte) ([]byte, error) {
	return a.activate(blob, secret)
}

// TestEnrollTwoRounds: the client sends the attestation bound to its CSR,
// answers the challenge with what the TPM recovered, and keeps the token
// for the second round.
func TestEnrollTwoRounds(t *testing.T) {
	ca := testpki.NewCA(t, "vendor")
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	var rounds []EnrollRequest
	var qdSeen []byte
	l, err := tls.Listen("tcp", "127.0.0.1:0", tlsconf.Server(ca.Server(t), nil, false))
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var req EnrollRequest
		json.NewDecoder(r.Body).Decode(&req)
		rounds = append(rounds, req)
		if req.ChallengeID == "" {
			json.NewEncoder(w).Encode(Response{Challenge: &Challenge{ID: "c1", CredentialBlob: []byte("blob"), EncryptedSecret: []byte("enc")}})
			return
		}
		csr, _ := x509.ParseCertificateRequest(rounds[0].CSR)
		leaf := issue(t, ca, csr)
		json.NewEncoder(w).Encode(Response{Chain: string(EncodeChain([]*x509.Certificate{leaf, ca.Cert}))})
	})}
	go srv.Serve(l)
	defer srv.Close()
	a := attesterFunc{
		attest: func(qd []byte) (*keystore.Evidence, error) {
			qdSeen = qd
			return &keystore.Evidence{EKCert: []byte("ek")}, nil
		},
		activate: func(blob, secret []byte) ([]byte, error) {
			if string(blob) != "blob" || string(secret) != "enc" {
				return nil, errors.New("wrong challenge")
			}
			return []byte("recovered"), nil
		},
	}
	chain, err := Enroll(context.Background(), &Backend{URL: "https://" + l.Addr().String(), Roots: ca.Pool}, Device{SystemID: "SYS-1", Signer: k}, "dct1_tok", a)
	if err != nil {
		t.Fatal(err)
	}
	if len(chain) != 2 || len(rounds) != 2 {
		t.Fatalf("%d certificates, %d rounds", len(chain), len(rounds))
	}
	if string(qdSeen) != string(QualifyingData(rounds[0].CSR)) || rounds[0].Attestation == nil {
		t.Error("the attestation is not bound to the CSR sent")
	}
	if rounds[1].Token != "dct1_tok" || rounds[1].ChallengeID != "c1" || string(rounds[1].Secret) != "recovered" {
		t.Errorf("second round %+v", rounds[1])
	}
}

func issue(t *testing.T, ca *testpki.CA, csr *x509.CertificateRequest) *x509.Certificate {
	t.Helper()
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: csr.Subject,
		NotBefore: time.Now().Add(-time.Minute), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, csr.PublicKey, ca.Key)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := x509.ParseCertificate(der)
	return c
}
