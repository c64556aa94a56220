package keystore

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func TestParseTPMURI(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want TPMURI
		str  string
	}{
		{"tpm:", TPMURI{Device: "/dev/tpmrm0", Key: "device"}, "tpm:/dev/tpmrm0"},
		{"tpm:/dev/tpmrm0", TPMURI{Device: "/dev/tpmrm0", Key: "device"}, "tpm:/dev/tpmrm0"},
		{"tpm:///dev/tpm0?key=k1", TPMURI{Device: "/dev/tpm0", Key: "k1"}, "tpm:/dev/tpm0?key=k1"},
		{"TPM://127.0.0.1:2321?key=device", TPMURI{Addr: "127.0.0.1:2321", Key: "device"}, "tpm://127.0.0.1:2321"},
		{"tpm://[::1]:2321", TPMURI{Addr: "[::1]:2321", Key: "device"}, "tpm://[::1]:2321"},
		{"tpm:?handle=0x81000010", TPMURI{Device: "/dev/tpmrm0", Key: "device", Handle: 0x81000010}, "tpm:/dev/tpmrm0?handle=0x81000010"},
	} {
		u, err := ParseTPMURI(tc.in)
		if err != nil {
			t.Errorf("%s: %v", tc.in, err)
			continue
		}
		if *u != tc.want {
			t.Errorf("%s: got %+v, want %+v", tc.in, *u, tc.want)
		}
		if u.String() != tc.str {
			t.Errorf("%s: String() = %q, want %q", tc.in, u.String(), tc.str)
		}
	}
	if got := (&TPMURI{Key: "k"}).BlobPath("/var/lib/dcagent"); got != "/var/lib/dcagent/keys/k.tpmkey" {
		t.Errorf("BlobPath = %q", got)
	}
}

func TestParseTPMURIErrors(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"pkcs11:token=x", "not a tpm: URI"},
		{"tpm://127.0.0.1", "not host:port"},
		{"tpm://127.0.0.1:0", "bad port"},
		{"tpm://127.0.0.1:99999", "bad port"},
		{"tpm://127.0.0.1:2321/dev", "takes no path"},
		{"tpm:dev/tpm0", "not an absolute path"},
		{"tpm:/dev/../etc/passwd", "not clean"},
		{"tpm:////", "not clean"},
		{"tpm:?key=../../etc", "key name"},
		{"tpm:?key=a&key=b", "given twice"},
		{"tpm:?handle=0x80000001", "not an owner persistent handle"},
		{"tpm:?handle=0x81000010&key=k", "not both"},
		{"tpm:?colour=blue", "unknown attribute"},
		{"tpm:?key", "not name=value"},
	} {
		_, err := ParseTPMURI(tc.in)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want an error with %q", tc.in, err, tc.want)
		}
	}
}

func TestParsePKCS11URI(t *testing.T) {
	in := "pkcs11:token=dcagent;object=my%20key;id=%01%02;type=private;library-manufacturer=SoftHSM?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=file:/etc/dcagent/pin"
	u, err := ParsePKCS11URI(in)
	if err != nil {
		t.Fatal(err)
	}
	want := PKCS11URI{Token: "dcagent", Object: "my key", ID: []byte{1, 2}, SlotID: -1, ModulePath: "/usr/lib/softhsm/libsofthsm2.so", PINSource: "file:/etc/dcagent/pin"}
	if !reflect.DeepEqual(*u, want) {
		t.Fatalf("got %+v\nwant %+v", *u, want)
	}
	s := u.String()
	if s != "pkcs11:token=dcagent;object=my%20key;id=%01%02?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=file:/etc/dcagent/pin" {
		t.Errorf("String() = %q", s)
	}
	u2, err := ParsePKCS11URI(s)
	if err != nil || !reflect.DeepEqual(u, u2) {
		t.Errorf("round trip: %+v, %v", u2, err)
	}
	// A bare absolute path is a file pin-source; env: names a variable.
	u, err = ParsePKCS11URI("pkcs11:serial=0123;slot-id=3;object=k?module-name=libsofthsm2&pin-source=/run/pin")
	if err != nil {
		t.Fatal(err)
	}
	if u.PINSource != "file:/run/pin" || u.SlotID != 3 || u.Serial != "0123" || u.ModuleName != "libsofthsm2" {
		t.Errorf("got %+v", u)
	}
}

func TestParsePKCS11URIErrors(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"tpm:", "not a pkcs11: URI"},
		{"pkcs11:object=k?module-path=/m.so", "names no token"},
		{"pkcs11:token=t?module-path=/m.so", "names no key"},
		{"pkcs11:token=t;object=k", "names no module"},
		{"pkcs11:token=t;token=u;object=k?module-path=/m.so", "given twice"},
		{"pkcs11:token=t;object=k;colour=red?module-path=/m.so", "unknown path attribute"},
		{"pkcs11:token=t;object=k?module-path=/m.so&colour=red", "unknown query attribute"},
		{"pkcs11:token=t;object=k?module-path=m.so", "must be absolute"},
		{"pkcs11:token=t;object=k;type=cert?module-path=/m.so", "does not name a private key"},
		{"pkcs11:token=t;object=k%2?module-path=/m.so", "truncated"},
		{"pkcs11:token=t;object=k%zz?module-path=/m.so", "bad %-escape"},
		{"pkcs11:token=t;slot-id=-1;object=k?module-path=/m.so", "slot-id"},
		{"pkcs11:token=t;object=k?module-path=/m.so&pin-source=relative", "file:/path or env:NAME"},
		{"pkcs11:token=t;object=k?module-path=/m.so&pin-source=env:1BAD", "not an environment variable name"},
		{"pkcs11:token=t;id=;object=k?module-path=/m.so", "empty id"},
	} {
		_, err := ParsePKCS11URI(tc.in)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want an error with %q", tc.in, err, tc.want)
		}
	}
}

// TestPINValueRefused: a PIN in the URI is refused, and the error does
// not repeat it.
func TestPINValueRefused(t *testing.T) {
	_, err := ParsePKCS11URI("pkcs11:token=t;object=k?module-path=/m.so&pin-value=s3cret")
	if !errors.Is(err, ErrPINInURI) {
		t.Fatalf("pin-value: %v, want ErrPINInURI", err)
	}
	if strings.Contains(err.Error(), "s3cret") {
		t.Fatalf("the error shows the PIN: %v", err)
	}
	if r := Redact("pkcs11:token=t?pin-value=s3cret&module-path=/m"); strings.Contains(r, "s3cret") {
		t.Errorf("Redact left the PIN: %s", r)
	}
}

func TestPIN(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "pin")
	if err := os.WriteFile(good, []byte("1234\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	open := filepath.Join(dir, "open-pin")
	if err := os.WriteFile(open, []byte("1234"), 0o644); err != nil {
		t.Fatal(err)
	}
	empty := filepath.Join(dir, "empty")
	if err := os.WriteFile(empty, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	u := &PKCS11URI{PINSource: "file:" + good}
	if pin, err := u.PIN(); err != nil || pin != "1234" {
		t.Errorf("file PIN: %q, %v", pin, err)
	}
	u.PINSource = "file:" + open
	if _, err := u.PIN(); err == nil || !strings.Contains(err.Error(), "readable by others") {
		t.Errorf("world-readable PIN file: %v", err)
	}
	u.PINSource = "file:" + empty
	if _, err := u.PIN(); err == nil || !strings.Contains(err.Error(), "empty") {
		t.Errorf("empty PIN file: %v", err)
	}
	u.PINSource = "file:" + filepath.Join(dir, "missing")
	if _, err := u.PIN(); err == nil {
		t.Error("missing PIN file accepted")
	}
	t.Setenv("MY_PIN", "9876")
	u.PINSource = "env:MY_PIN"
	if pin, err := u.PIN(); err != nil || pin != "9876" {
		t.Errorf("env PIN: %q, %v", pin, err)
	}
	u.PINSource = ""
	t.Setenv(PINEnv, "")
	if _, err := u.PIN(); err == nil || !strings.Contains(err.Error(), PINEnv) {
		t.Errorf("no PIN at all: %v", err)
	}
	t.Setenv(PINEnv, "5555")
	if pin, err := u.PIN(); err != nil || pin != "5555" {
		t.Errorf("default env PIN: %q, %v", pin, err)
	}
}

func TestParseFileURI(t *testing.T) {
	for in, want := range map[string]string{
		"file:/etc/dcagent/key.pem":          "/etc/dcagent/key.pem",
		"file:///etc/dcagent/key.pem":        "/etc/dcagent/key.pem",
		"file://localhost/etc/dcagent/k.pem": "/etc/dcagent/k.pem",
		"file:dev-key.pem":                   "/state/dev-key.pem",
	} {
		u, err := ParseFileURI(in)
		if err != nil {
			t.Errorf("%s: %v", in, err)
			continue
		}
		if got := u.Resolve("/state"); got != want {
			t.Errorf("%s: %s, want %s", in, got, want)
		}
	}
	for _, in := range []string{"file:", "file://host/k.pem", "file:/etc/", "file:/k.pem?x=1", "tpm:"} {
		if _, err := ParseFileURI(in); err == nil {
			t.Errorf("%s accepted", in)
		}
	}
}

// FuzzKeyURI feeds every URI parser. Whatever one accepts must print in a
// canonical form that parses back to the same thing, and no input may
// make one panic.
func FuzzKeyURI(f *testing.F) {
	for _, s := range []string{
		"tpm:", "tpm:/dev/tpmrm0?key=device", "tpm://127.0.0.1:2321?key=device", "tpm://[::1]:1?handle=0x81000001",
		"pkcs11:token=dcagent;object=device?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=file:/etc/dcagent/pin",
		"pkcs11:token=a%20b;id=%00%ff;slot-id=0;serial=x?module-name=softhsm2&pin-source=env:PIN",
		"pkcs11:token=t;object=k?module-path=/m.so&pin-value=1234",
		"file:/etc/dcagent/key.pem", "file:key.pem", "file:///k",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if u, err := ParseTPMURI(s); err == nil {
			u2, err := ParseTPMURI(u.String())
			if err != nil || *u2 != *u {
				t.Fatalf("tpm: %q -> %q -> %+v, %v", s, u.String(), u2, err)
			}
		}
		if u, err := ParsePKCS11URI(s); err == nil {
			u2, err := ParsePKCS11URI(u.String())
			if err != nil || !reflect.DeepEqual(u, u2) {
				t.Fatalf("pkcs11: %q -> %q -> %+v, %v", s, u.String(), u2, err)
			}
			if _, q, ok := strings.Cut(s, "?"); ok {
				for _, attr := range strings.Split(q, "&") {
					if strings.HasPrefix(attr, "pin-value=") {
						t.Fatalf("pkcs11: accepted a pin-value: %q", s)
					}
				}
			}
		}
		if u, err := ParseFileURI(s); err == nil {
			u2, err := ParseFileURI(u.String())
			if err != nil || *u2 != *u {
				t.Fatalf("file: %q -> %q -> %+v, %v", s, u.String(), u2, err)
			}
		}
	})
}
