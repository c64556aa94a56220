package tpm

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/binary"
	"errors"
	"io"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dcagent/dcagent/crypto/keystore"
	"github.com/dcagent/dcagent/crypto/tlsconf"
	"github.com/dcagent/dcagent/internal/realparts"
	"github.com/dcagent/dcagent/internal/testpki"
	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"
)

func openTestStore(t testing.TB, uri, stateDir string) *Store {
	t.Helper()
	s, err := OpenStore(context.Background(), uri, keystore.Options{StateDir: stateDir})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func verify(t *testing.T, pub crypto.PublicKey, digest, sig []byte, opts crypto.SignerOpts) {
	t.Helper()
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		if !ecdsa.VerifyASN1(k, digest, sig) {
			t.Fatal("ECDSA signature from the TPM does not verify")
		}
	case *rsa.PublicKey:
		var err error
		if pss, ok := opts.(*rsa.PSSOptions); ok {
			err = rsa.VerifyPSS(k, opts.HashFunc(), digest, sig, pss)
		} else {
			err = rsa.VerifyPKCS1v15(k, opts.HashFunc(), digest, sig)
		}
		if err != nil {
			t.Fatalf("RSA signature from the TPM does not verify: %v", err)
		}
	default:
		t.Fatalf("public key %T", pub)
	}
}

// TestGenerateSignECC makes a key in a fresh swtpm and signs with it. The
// first ECDSA signature after swtpm starts is answered TPM_RC_RETRY; the
// store must resend it, and says so in Retries.
func TestGenerateSignECC(t *testing.T) {
	sw := realparts.SWTPMForTest(t)
	state := t.TempDir()
	s := openTestStore(t, sw.URI("device"), state)
	k, err := s.Generate(context.Background(), keystore.ECCP256)
	if err != nil {
		t.Fatal(err)
	}
	pub, ok := k.Public().(*ecdsa.PublicKey)
	if !ok || pub.Curve.Params().Name != "P-256" {
		t.Fatalf("public key %T, want ECDSA P-256", k.Public())
	}
	digest := sha256.Sum256([]byte("hello"))
	sig, err := k.Sign(rand.Reader, digest[:], crypto.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	verify(t, pub, digest[:], sig, crypto.SHA256)
	// The blob is in the state dir, private to the owner, in TSS2 PEM.
	fi, err := os.Stat(filepath.Join(state, "keys", "device.tpmkey"))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("blob mode %v, want 0600", fi.Mode().Perm())
	}
	data, _ := os.ReadFile(filepath.Join(state, "keys", "device.tpmkey"))
	if !bytes.HasPrefix(data, []byte("-----BEGIN TSS2 PRIVATE KEY-----")) {
		t.Errorf("blob is not TSS2 PEM: %.40q", data)
	}
	if _, err := s.Generate(context.Background(), keystore.ECCP256); !errors.Is(err, keystore.ErrKeyExists) {
		t.Errorf("second Generate: %v, want ErrKeyExists", err)
	}
	if d := s.Describe(); !strings.Contains(d, sw.Addr()) || !strings.Contains(d, "device.tpmkey") {
		t.Errorf("Describe = %q", d)
	}
}

// TestFirstDAUseRetried: swtpm answers the first use of a key under
// dictionary-attack protection after each start with TPM_RC_RETRY (it
// must first record in NV that the TPM is no longer in an orderly
// state). dcagent's own keys are noDA, but a key made by other tools
// (tpm2-tools makes DA-protected keys by default) is not: the store
// resends the command, and the signature comes through.
func TestFirstDAUseRetried(t *testing.T) {
	sw := realparts.SWTPMForTest(t)
	state := t.TempDir()
	s := openTestStore(t, sw.URI("da"), state)
	tmpl, err := keyTemplate(keystore.ECCP256)
	if err != nil {
		t.Fatal(err)
	}
	tmpl.ObjectAttributes.NoDA = false
	if _, err := s.generate(context.Background(), tmpl); err != nil {
		t.Fatal(err)
	}
	s.Close()
	if err := sw.Restart(context.Background()); err != nil {
		t.Fatal(err)
	}
	s2 := openTestStore(t, sw.URI("da"), state)
	k, err := s2.Signer(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	before := s2.TPM().Retries()
	digest := sha256.Sum256([]byte("first use"))
	sig, err := k.Sign(rand.Reader, digest[:], crypto.SHA256)
	if err != nil {
		t.Fatalf("first signature with a DA-protected key after start: %v", err)
	}
	verify(t, k.Public(), digest[:], sig, crypto.SHA256)
	if got := s2.TPM().Retries() - before; got == 0 {
		t.Errorf("no command was resent; swtpm answers the first DA-protected use after start with TPM_RC_RETRY")
	}
}

// TestReopenKeyAfterRestart opens the key from its blob in a new store
// after the TPM was power cycled: same public key, still signs.
func TestReopenKeyAfterRestart(t *testing.T) {
	sw := realparts.SWTPMForTest(t)
	state := t.TempDir()
	s1, err := OpenStore(context.Background(), sw.URI("device"), keystore.Options{StateDir: state})
	if err != nil {
		t.Fatal(err)
	}
	k1, err := s1.Generate(context.Background(), keystore.ECCP256)
	if err != nil {
		t.Fatal(err)
	}
	s1.Close()
	if err := sw.Restart(context.Background()); err != nil {
		t.Fatal(err)
	}
	s2 := openTestStore(t, sw.URI("device"), state)
	k2, err := s2.Signer(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if !k1.Public().(*ecdsa.PublicKey).Equal(k2.Public()) {
		t.Fatal("the reopened key has another public key")
	}
	digest := sha256.Sum256([]byte("after restart"))
	sig, err := k2.Sign(rand.Reader, digest[:], crypto.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	verify(t, k2.Public(), digest[:], sig, crypto.SHA256)
}

// TestReconnectAfterTPMRestart: the TPM restarts under a store that holds
// a loaded key; the next signature reconnects, reloads and succeeds.
func TestReconnectAfterTPMRestart(t *testing.T) {
	sw := realparts.SWTPMForTest(t)
	s := openTestStore(t, sw.URI("device"), t.TempDir())
	k, err := s.Generate(context.Background(), keystore.ECCP256)
	if err != nil {
		t.Fatal(err)
	}
	addr := sw.Addr()
	if err := sw.Restart(context.Background()); err != nil {
		t.Fatal(err)
	}
	if sw.Addr() != addr {
		t.Fatalf("swtpm came back on %s, not %s (port taken meanwhile)", sw.Addr(), addr)
	}
	digest := sha256.Sum256([]byte("x"))
	sig, err := k.Sign(rand.Reader, digest[:], crypto.SHA256)
	if err != nil {
		t.Fatalf("sign after the TPM restarted: %v", err)
	}
	verify(t, k.Public(), digest[:], sig, crypto.SHA256)
}

func TestGenerateSignRSA(t *testing.T) {
	sw := realparts.SWTPMForTest(t)
	s := openTestStore(t, sw.URI("rsa"), t.TempDir())
	k, err := s.Generate(context.Background(), keystore.RSA2048)
	if err != nil {
		t.Fatal(err)
	}
	pub, ok := k.Public().(*rsa.PublicKey)
	if !ok || pub.N.BitLen() != 2048 {
		t.Fatalf("public key %T, want RSA 2048", k.Public())
	}
	digest := sha256.Sum256([]byte("hello"))
	for _, opts := range []crypto.SignerOpts{crypto.SHA256, &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash, Hash: crypto.SHA256}} {
		sig, err := k.Sign(rand.Reader, digest[:], opts)
		if err != nil {
			t.Fatal(err)
		}
		verify(t, pub, digest[:], sig, opts)
	}
}

func TestPersistentHandle(t *testing.T) {
	sw := realparts.SWTPMForTest(t)
	uri := "tpm://" + sw.Addr() + "?handle=0x81000010"
	s := openTestStore(t, uri, "")
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
	s2 := openTestStore(t, uri, "")
	k2, err := s2.Signer(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if !k.Public().(*ecdsa.PublicKey).Equal(k2.Public()) {
		t.Fatal("persistent key reopened with another public key")
	}
	digest := sha256.Sum256([]byte("persisted"))
	sig, err := k2.Sign(rand.Reader, digest[:], crypto.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	verify(t, k2.Public(), digest[:], sig, crypto.SHA256)
}

// TestCopiedBlobRefused is the copied-device case at the key level: the
// blob made by one TPM, given to another, does not load, and the error
// says why.
func TestCopiedBlobRefused(t *testing.T) {
	swA := realparts.SWTPMForTest(t)
	swB := realparts.SWTPMForTest(t)
	stateA := t.TempDir()
	sA := openTestStore(t, swA.URI("device"), stateA)
	if _, err := sA.Generate(context.Background(), keystore.ECCP256); err != nil {
		t.Fatal(err)
	}
	stateB := t.TempDir()
	copyFile(t, filepath.Join(stateA, "keys", "device.tpmkey"), filepath.Join(stateB, "keys", "device.tpmkey"))
	sB := openTestStore(t, swB.URI("device"), stateB)
	_, err := sB.Signer(context.Background())
	if !errors.Is(err, ErrForeignKey) {
		t.Fatalf("Signer on another TPM: %v, want ErrForeignKey", err)
	}
	if !strings.Contains(err.Error(), "copied") {
		t.Errorf("error does not say the state was copied: %v", err)
	}
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	data, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Dir(to), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestSharedConnection: two stores on one TPM share one connection
// (swtpm serves one client at a time, so two connections would block)
// and sign concurrently.
func TestSharedConnection(t *testing.T) {
	sw := realparts.SWTPMForTest(t)
	state := t.TempDir()
	a := openTestStore(t, sw.URI("a"), state)
	b := openTestStore(t, sw.URI("b"), state)
	if a.TPM() != b.TPM() {
		t.Fatal("two stores on one TPM got two connections")
	}
	ka, err := a.Generate(context.Background(), keystore.ECCP256)
	if err != nil {
		t.Fatal(err)
	}
	kb, err := b.Generate(context.Background(), keystore.ECCP256)
	if err != nil {
		t.Fatal(err)
	}
	ctr, err := a.Counter(0x01800020)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 40)
	for i := 0; i < 10; i++ {
		for _, k := range []crypto.Signer{ka, kb} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				d := sha256.Sum256([]byte{byte(i)})
				sig, err := k.Sign(rand.Reader, d[:], crypto.SHA256)
				if err == nil && !ecdsa.VerifyASN1(k.Public().(*ecdsa.PublicKey), d[:], sig) {
					err = errors.New("bad signature")
				}
				errs <- err
			}()
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := ctr.Increment()
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
}

func TestCounter(t *testing.T) {
	sw := realparts.SWTPMForTest(t)
	s := openTestStore(t, sw.URI("device"), t.TempDir())
	c, err := s.Counter(0x01800010)
	if err != nil {
		t.Fatal(err)
	}
	v0, err := c.Read()
	if err != nil {
		t.Fatalf("read a new counter: %v", err)
	}
	v1, err := c.Increment()
	if err != nil {
		t.Fatal(err)
	}
	if v1 != v0+1 {
		t.Fatalf("increment: %d after %d", v1, v0)
	}
	if r, _ := c.Read(); r != v1 {
		t.Fatalf("read %d after increment to %d", r, v1)
	}
	// Deleting a counter and making it again cannot roll it back: the
	// TPM starts a new counter at the highest value it ever retired.
	c2, err := s.Counter(0x01800011)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 5; i++ {
		if _, err := c2.Increment(); err != nil {
			t.Fatal(err)
		}
	}
	high, _ := c2.Read()
	if err := s.t.do(context.Background(), func(tp transport.TPM) error {
		rp, err := (tpm2.NVReadPublic{NVIndex: tpm2.TPMHandle(0x01800011)}).Execute(tp)
		if err != nil {
			return err
		}
		_, err = tpm2.NVUndefineSpace{
			AuthHandle: tpm2.AuthHandle{Handle: tpm2.TPMRHOwner, Auth: tpm2.PasswordAuth(nil)},
			NVIndex:    tpm2.NamedHandle{Handle: 0x01800011, Name: rp.NVName},
		}.Execute(tp)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	c2, err = s.Counter(0x01800011)
	if err != nil {
		t.Fatal(err)
	}
	if v, _ := c2.Read(); v < high {
		t.Errorf("a counter made again starts at %d, below the %d it had", v, high)
	}
	// The value survives a power cycle.
	s.Close()
	if err := sw.Restart(context.Background()); err != nil {
		t.Fatal(err)
	}
	s2 := openTestStore(t, sw.URI("device"), t.TempDir())
	c3, err := s2.Counter(0x01800010)
	if err != nil {
		t.Fatal(err)
	}
	if v, err := c3.Read(); err != nil || v != v1 {
		t.Fatalf("after restart: %d, %v; want %d", v, err, v1)
	}
	if _, err := s2.Counter(0x02000000); err == nil {
		t.Error("Counter accepted a handle outside the NV range")
	}
}

func TestCounterRefusesOrdinaryIndex(t *testing.T) {
	sw := realparts.SWTPMForTest(t)
	s := openTestStore(t, sw.URI("device"), t.TempDir())
	err := s.t.do(context.Background(), func(tp transport.TPM) error {
		_, err := tpm2.NVDefineSpace{
			AuthHandle: tpm2.AuthHandle{Handle: tpm2.TPMRHOwner, Auth: tpm2.PasswordAuth(nil)},
			PublicInfo: tpm2.New2B(tpm2.TPMSNVPublic{
				NVIndex: 0x01800030, NameAlg: tpm2.TPMAlgSHA256,
				Attributes: tpm2.TPMANV{OwnerWrite: true, OwnerRead: true, NT: tpm2.TPMNTOrdinary, NoDA: true},
				DataSize:   8,
			}),
		}.Execute(tp)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Counter(0x01800030); err == nil || !strings.Contains(err.Error(), "not a counter") {
		t.Fatalf("Counter on an ordinary index: %v", err)
	}
}

// TestTLSWithTPMKey runs TLS 1.3 and 1.2 mutual authentication where the
// client's key is in the TPM (ECC P-256 and RSA 2048, which TLS 1.3 makes
// sign with PSS).
func TestTLSWithTPMKey(t *testing.T) {
	sw := realparts.SWTPMForTest(t)
	ca := testpki.NewCA(t, "vendor")
	state := t.TempDir()
	for _, alg := range []keystore.Algorithm{keystore.ECCP256, keystore.RSA2048} {
		s := openTestStore(t, sw.URI(string(alg)), state)
		k, err := s.Generate(context.Background(), alg)
		if err != nil {
			t.Fatal(err)
		}
		cert := issueFor(t, ca, k.Public(), "SYS-1")
		for _, version := range []uint16{tls.VersionTLS13, tls.VersionTLS12} {
			srvCfg := tlsconf.Server(ca.Server(t), ca.Pool, true)
			cliCfg, err := tlsconf.Client(ca.Pool, &tls.Certificate{Certificate: [][]byte{cert.Raw}, PrivateKey: k, Leaf: cert}, "localhost")
			if err != nil {
				t.Fatal(err)
			}
			cliCfg.MaxVersion = version
			if err := handshake(t, srvCfg, cliCfg); err != nil {
				t.Errorf("%s, TLS %x: %v", alg, version, err)
			}
		}
	}
}

func issueFor(t *testing.T, ca *testpki.CA, pub crypto.PublicKey, cn string) *x509.Certificate {
	t.Helper()
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: cn},
		NotBefore:    time.Now().Add(-time.Minute),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, pub, ca.Key)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := x509.ParseCertificate(der)
	return c
}

func handshake(t *testing.T, srv, cli *tls.Config) error {
	t.Helper()
	l, err := tls.Listen("tcp", "127.0.0.1:0", srv)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	srvErr := make(chan error, 1)
	go func() {
		c, err := l.Accept()
		if err != nil {
			srvErr <- err
			return
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(20 * time.Second))
		if err := c.(*tls.Conn).Handshake(); err != nil {
			srvErr <- err
			return
		}
		_, err = io.Copy(c, io.LimitReader(c, 4))
		srvErr <- err
	}()
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 20 * time.Second}, "tcp", l.Addr().String(), cli)
	if err != nil {
		return err
	}
	defer c.Close()
	if _, err := c.Write([]byte("ping")); err != nil {
		return err
	}
	buf := make([]byte, 4)
	if _, err := io.ReadFull(c, buf); err != nil {
		return err
	}
	return <-srvErr
}

// fakeConn answers each command with the next canned response code.
type fakeConn struct {
	codes []uint32
	sent  int
}

func (f *fakeConn) Send(cmd []byte) ([]byte, error) {
	rc := f.codes[min(f.sent, len(f.codes)-1)]
	f.sent++
	rsp := make([]byte, 10)
	binary.BigEndian.PutUint16(rsp, 0x8001)
	binary.BigEndian.PutUint32(rsp[2:], 10)
	binary.BigEndian.PutUint32(rsp[6:], rc)
	return rsp, nil
}
func (f *fakeConn) Close() error { return nil }

func TestRetrier(t *testing.T) {
	for _, tc := range []struct {
		name   string
		codes  []uint32
		sends  int
		wantRC uint32
	}{
		{"success at once", []uint32{0}, 1, 0},
		{"retry then success", []uint32{rcRetry, rcRetry, 0}, 3, 0},
		{"yielded then success", []uint32{rcYielded, 0}, 2, 0},
		{"testing then success", []uint32{rcTesting, rcTesting, rcTesting, 0}, 4, 0},
		{"an error is not resent", []uint32{0x98e}, 1, 0x98e},
		{"a TPM that never stops retrying is given up on", []uint32{rcRetry}, retryAttempts, rcRetry},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := &fakeConn{codes: tc.codes}
			var n atomic.Uint64
			var slept time.Duration
			r := &retrier{conn: f, retries: &n, sleep: func(d time.Duration) { slept += d }}
			rsp, err := r.Send([]byte{0x80, 1, 0, 0, 0, 10, 0, 0, 1, 0x7b})
			if err != nil {
				t.Fatal(err)
			}
			if rc := binary.BigEndian.Uint32(rsp[6:]); rc != tc.wantRC {
				t.Errorf("rc 0x%x, want 0x%x", rc, tc.wantRC)
			}
			if f.sent != tc.sends {
				t.Errorf("sent %d times, want %d", f.sent, tc.sends)
			}
			if int(n.Load()) != tc.sends-1 {
				t.Errorf("Retries %d, want %d", n.Load(), tc.sends-1)
			}
			if slept > 10*time.Second {
				t.Errorf("slept %v in all", slept)
			}
		})
	}
}

func TestReadResponseRejectsBadSizes(t *testing.T) {
	for _, hdr := range [][]byte{
		{0x80, 1, 0, 0, 0, 5, 0, 0, 0, 0},     // smaller than a header
		{0x80, 1, 0xff, 0, 0, 0, 0, 0, 0, 0},  // absurdly large
		{0x80, 1, 0, 0, 0, 20, 0, 0, 0, 0, 1}, // body cut short
	} {
		if _, err := readResponse(bytes.NewReader(hdr)); !isTransportError(err) {
			t.Errorf("readResponse(%x) = %v, want a transport error", hdr, err)
		}
	}
}

func TestOpenUnreachable(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	_, err = OpenStore(context.Background(), "tpm://"+addr, keystore.Options{StateDir: t.TempDir()})
	if err == nil || !strings.Contains(err.Error(), "cannot reach the TPM at "+addr) {
		t.Fatalf("open an unreachable TPM: %v", err)
	}
	_, err = OpenStore(context.Background(), "tpm:/dev/no-such-tpm0", keystore.Options{StateDir: t.TempDir()})
	if err == nil || !strings.Contains(err.Error(), "no TPM at /dev/no-such-tpm0") {
		t.Fatalf("open a missing device: %v", err)
	}
}

func BenchmarkSignTPM(b *testing.B) {
	sw := realparts.SWTPMForTest(b)
	for _, alg := range []keystore.Algorithm{keystore.ECCP256, keystore.RSA2048} {
		b.Run(string(alg), func(b *testing.B) {
			s := openTestStore(b, sw.URI(string(alg)), b.TempDir())
			k, err := s.Generate(context.Background(), alg)
			if err != nil {
				b.Fatal(err)
			}
			digest := sha256.Sum256([]byte("bench"))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := k.Sign(rand.Reader, digest[:], crypto.SHA256); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// TestNoLockoutAcrossRestarts: a DA-protected key is used, then the TPM
// is power cycled, four times over. swtpm counts each stop without
// TPM2_Shutdown after such a use as a dictionary-attack failure and
// locks out at three; the helper's orderly stop keeps the count at zero.
func TestNoLockoutAcrossRestarts(t *testing.T) {
	sw := realparts.SWTPMForTest(t)
	state := t.TempDir()
	s := openTestStore(t, sw.URI("da"), state)
	tmpl, _ := keyTemplate(keystore.ECCP256)
	tmpl.ObjectAttributes.NoDA = false
	if _, err := s.generate(context.Background(), tmpl); err != nil {
		t.Fatal(err)
	}
	s.Close()
	for i := 0; i < 4; i++ {
		s, err := OpenStore(context.Background(), sw.URI("da"), keystore.Options{StateDir: state})
		if err != nil {
			t.Fatal(err)
		}
		k, err := s.Signer(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		d := sha256.Sum256([]byte{byte(i)})
		if _, err := k.Sign(rand.Reader, d[:], crypto.SHA256); err != nil {
			t.Fatalf("cycle %d: %v", i, err)
		}
		s.Close()
		if err := sw.Restart(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
}

// TestBusyTPMSaysSo: swtpm serves one client at a time. A second process
// opening it while the first holds it gets a clear answer after the probe
// time, not a two-minute hang.
func TestBusyTPMSaysSo(t *testing.T) {
	old := probeTimeout
	probeTimeout = time.Second
	t.Cleanup(func() { probeTimeout = old })
	sw := realparts.SWTPMForTest(t)
	holder, err := net.Dial("tcp", sw.Addr()) // another program holding the TPM
	if err != nil {
		t.Fatal(err)
	}
	defer holder.Close()
	start := time.Now()
	_, err = OpenStore(context.Background(), sw.URI("device"), keystore.Options{StateDir: t.TempDir()})
	if err == nil || !strings.Contains(err.Error(), "one client at a time") {
		t.Fatalf("open a busy TPM: %v", err)
	}
	if d := time.Since(start); d > 30*time.Second {
		t.Errorf("took %v", d)
	}
	holder.Close()
}
