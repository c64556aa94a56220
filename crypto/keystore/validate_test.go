package keystore

import "testing"

func TestRedactPinValue(t *testing.T) {
	cases := map[string]string{
		"pkcs11:token=a;object=k?pin-value=1234":        "pkcs11:token=a;object=k?pin-value=REDACTED",
		"pkcs11:token=a?PIN-VALUE=99&module-path=/x.so": "pkcs11:token=a?PIN-VALUE=REDACTED&module-path=/x.so",
		"pkcs11:pin-value=1;pin-value=2":                "pkcs11:pin-value=REDACTED;pin-value=REDACTED",
		"pkcs11:token=a":                                "pkcs11:token=a",
		"pkcs11:token=a?pin-value=":                     "pkcs11:token=a?pin-value=REDACTED",
	}
	for in, want := range cases {
		if got := Redact(in); got != want {
			t.Errorf("Redact(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestNameChecks(t *testing.T) {
	for s, want := range map[string]bool{"device": true, "d-1.key_2": true, "-x": false, "": false, "a b": false, string(make([]byte, 65)): false} {
		if validKeyName(s) != want {
			t.Errorf("validKeyName(%q) != %v", s, want)
		}
	}
	for s, want := range map[string]bool{"/dev/tpmrm0": true, "/": false, "dev/tpm0": false, "/dev/tpm 0": false} {
		if validDevicePath(s) != want {
			t.Errorf("validDevicePath(%q) != %v", s, want)
		}
	}
	for s, want := range map[string]bool{"PIN": true, "_X1": true, "1X": false, "A-B": false, "": false} {
		if validEnvName(s) != want {
			t.Errorf("validEnvName(%q) != %v", s, want)
		}
	}
}
