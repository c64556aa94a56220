package config

import (
	"strings"
	"testing"
)

func TestIdentityValidation(t *testing.T) {
	base := "[device]\nsystem_id = S\n[identity]\n"
	for _, tc := range []struct{ body, want string }{
		{"key_uri = tpm:/dev/tpmrm0\n", ""},
		{"key_uri = pkcs11:token=t;object=k?module-path=/m.so&pin-source=file:/etc/dcagent/pin\n", ""},
		{"key_uri = file:dev.pem\n", ""},
		{"key_uri = /dev/tpmrm0\n", "not a key URI"},
		{"key_uri = vault:secret\n", "not a key URI"},
		{"key_uri = pkcs11:token=t;object=k?module-path=/m.so&pin-value=1234\n", "pin-value"},
		{"retry_min = 0s\n", "retry_min"},
		{"retry_min = 2m\nretry_max = 1m\n", "retry_max"},
		{"renew_at = 1.5\n", "renew_at"},
	} {
		_, err := Parse("dcagent.conf", []byte(base+tc.body))
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%q: %v", tc.body, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%q: %v, want %q", tc.body, err, tc.want)
		}
		if err != nil && strings.Contains(err.Error(), "1234") {
			t.Errorf("the error repeats the PIN: %v", err)
		}
	}
}
