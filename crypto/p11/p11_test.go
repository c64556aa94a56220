//go:build cgo

package p11

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"io"
	"math/big"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/dcagent/dcagent/crypto/keystore"
	"github.com/dcagent/dcagent/crypto/tlsconf"
	"github.com/dcagent/dcagent/internal/realparts"
	"github.com/dcagent/dcagent/internal/testpki"
)

func openStore(t testing.TB, uri string) *Store {
	t.Helper()
	s, err := Open(context.Background(), uri, keystore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestGenerateSignECC(t *testing.T) {
	tok := realparts.SoftHSMForTest(t, "dcagent")
	uri := tok.URI("device")
	s := openStore(t, uri)
	if _, err := s.Signer(context.Background()); !errors.Is(err, keystore.ErrNoKey) {
		t.Fatalf("Signer before Generate: %v, want ErrNoKey", err)
	}
	k, err := s.Generate(context.Background(), keystore.ECCP256)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Generate(context.Background(), keystore.ECCP256); !errors.Is(err, keystore.ErrKeyExists) {
		t.Fatalf("second Generate: %v, want ErrKeyExists", err)
	}
	d := sha256.Sum256([]byte("hello"))
	sig, err := k.Sign(rand.Reader, d[:], crypto.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	if !ecdsa.VerifyASN1(k.Public().(*ecdsa.PublicKey), d[:], sig) {
		t.Fatal("signature from the token does not verify")
	}
	// A second store (another part of the agent) opens the same key.
	s2 := openStore(t, uri)
	k2, err := s2.Signer(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if !k2.Public().(*ecdsa.PublicKey).Equal(k.Public()) {
		t.Fatal("reopened key differs")
	}
	if d := s2.Describe(); !strings.Contains(d, `"dcagent"`) || !strings.Contains(d, "does not let it out") {
		t.Errorf("Describe = %q", d)
	}
}

func TestGenerateSignRSA(t *testing.T) {
	tok := realparts.SoftHSMForTest(t, "dcagent")
	s := openStore(t, tok.URI("rsa"))
	k, err := s.Generate(context.Background(), keystore.RSA2048)
	if err != nil {
		t.Fatal(err)
	}
	pub := k.Public().(*rsa.PublicKey)
	d := sha256.Sum256([]byte("hello"))
	sig, err := k.Sign(rand.Reader, d[:], crypto.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	if err := rsa.VerifyPKCS1v15(pub, crypto.SHA256, d[:], sig); err != nil {
		t.Fatal(err)
	}
	pss := &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash, Hash: crypto.SHA256}
	sig, err = k.Sign(rand.Reader, d[:], pss)
	if err != nil {
		t.Fatal(err)
	}
	if err := rsa.VerifyPSS(pub, crypto.SHA256, d[:], sig, pss); err != nil {
		t.Fatal(err)
	}
}

func TestOpenErrors(t *testing.T) {
	tok := realparts.SoftHSMForTest(t, "dcagent")
	bad := tok.URI("device")
	if _, err := Open(context.Background(), strings.Replace(bad, "token=dcagent", "token=other", 1), keystore.Options{}); err == nil ||
		!strings.Contains(err.Error(), `tokens present: "dcagent"`) {
		t.Errorf("unknown token: %v", err)
	}
	wrongPIN := tok.HSM.Dir + "/wrong.pin"
	if err := os.WriteFile(wrongPIN, []byte("0000"), 0o600); err != nil {
		t.Fatal(err)
	}
	u := strings.Replace(bad, "pin-source=file:"+tok.PINFile, "pin-source=file:"+wrongPIN, 1)
	_, err := Open(context.Background(), u, keystore.Options{})
	if err == nil || !strings.Contains(err.Error(), "wrong PIN") || strings.Contains(err.Error(), "0000") {
		t.Errorf("wrong PIN: %v", err)
	}
	if _, err := Open(context.Background(), "pkcs11:token=dcagent;object=k?module-path=/no/such/module.so&pin-source=file:"+tok.PINFile, keystore.Options{}); err == nil ||
		!strings.Contains(err.Error(), "cannot load the module /no/such/module.so") {
		t.Errorf("missing module: %v", err)
	}
	if _, err := keystore.Open(context.Background(), bad+"&pin-value=1234", keystore.Options{}); !errors.Is(err, keystore.ErrPINInURI) {
		t.Errorf("pin-value: %v", err)
	}
}

// TestTLSWithTokenKey: TLS 1.3 and 1.2 mutual authentication with the
// client key in SoftHSM (RSA makes TLS 1.3 sign with PSS).
func TestTLSWithTokenKey(t *testing.T) {
	tok := realparts.SoftHSMForTest(t, "dcagent")
	ca := testpki.NewCA(t, "vendor")
	for _, alg := range []keystore.Algorithm{keystore.ECCP256, keystore.RSA2048} {
		s := openStore(t, tok.URI(string(alg)))
		k, err := s.Generate(context.Background(), alg)
		if err != nil {
			t.Fatal(err)
		}
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: "SYS-1"},
			NotBefore: time.Now().Add(-time.Minute), NotAfter: time.Now().Add(time.Hour),
			KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, k.Public(), ca.Key)
		if err != nil {
			t.Fatal(err)
		}
		for _, v := range []uint16{tls.VersionTLS13, tls.VersionTLS12} {
			cli, err := tlsconf.Client(ca.Pool, &tls.Certificate{Certificate: [][]byte{der}, PrivateKey: k}, "localhost")
			if err != nil {
				t.Fatal(err)
			}
			cli.MaxVersion = v
			if err := handshake(tlsconf.Server(ca.Server(t), ca.Pool, true), cli); err != nil {
				t.Errorf("%s TLS %x: %v", alg, v, err)
			}
		}
	}
}

func handshake(srv, cli *tls.Config) error {
	l, err := tls.Listen("tcp", "127.0.0.1:0", srv)
	if err != nil {
		return err
	}
	defer l.Close()
	done := make(chan error, 1)
	go func() {
		c, err := l.Accept()
		if err != nil {
			done <- err
			return
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(20 * time.Second))
		_, err = io.Copy(c, io.LimitReader(c, 4))
		done <- err
	}()
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 20 * time.Second}, "tcp", l.Addr().String(), cli)
	if err != nil {
		return err
	}
	defer c.Close()
	if _, err := c.Write([]byte("ping")); err != nil {
		return err
	}
	if _, err := io.ReadFull(c, make([]byte, 4)); err != nil {
		return err
	}
	return <-done
}

func BenchmarkSignPKCS11(b *testing.B) {
	tok := realparts.SoftHSMForTest(b, "bench")
	s := openStore(b, tok.URI("bench"))
	k, err := s.Generate(context.Background(), keystore.ECCP256)
	if err != nil {
		b.Fatal(err)
	}
	d := sha256.Sum256([]byte("bench"))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := k.Sign(rand.Reader, d[:], crypto.SHA256); err != nil {
			b.Fatal(err)
		}
	}
}
