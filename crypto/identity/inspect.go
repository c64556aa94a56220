package identity

import (
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/dcagent/dcagent/agent/config"
	"github.com/dcagent/dcagent/crypto/keystore"
	"github.com/dcagent/dcagent/crypto/tlsconf"
)

// Finding is one thing Inspect found, shaped for dcagent diag.
type Finding struct {
	Status  string // "ok", "warn" or "fail"
	Subject string
	Message string
	Action  string // empty for ok findings
}

// Inspect checks the identity without opening the key store, so that it
// can run beside a daemon that holds the TPM (swtpm and TPMs without a
// resource manager serve one client at a time): the key URI and whether
// this build can use it, the pinned vendor CA, the stored chain, that it
// chains to the CA and names this system ID, the clock, and renewal.
func Inspect(cfg *config.Config, now time.Time) []Finding {
	var out []Finding
	add := func(status, subject, msg, action string) {
		out = append(out, Finding{Status: status, Subject: subject, Message: msg, Action: action})
	}

	// The key.
	uri := cfg.Identity.KeyURI
	scheme, _, _ := strings.Cut(uri, ":")
	switch {
	case uri == "":
		add("fail", "[identity] key_uri", "no device key is configured", "Set [identity] key_uri to the device key: tpm:/dev/tpmrm0 for the TPM, or a pkcs11: URI for an HSM.")
	case keystore.Missing(strings.ToLower(scheme)) != nil:
		add("fail", keystore.Redact(uri), keystore.Missing(strings.ToLower(scheme)).Error(), "Use a build with this key store, or a key URI this build supports ("+strings.Join(keystore.Schemes(), ", ")+").")
	default:
		out = append(out, inspectKey(cfg, strings.ToLower(scheme))...)
	}

	// The vendor CA.
	roots, err := tlsconf.LoadCAFile(cfg.Backend.CAFile)
	if err != nil {
		add("fail", cfg.Backend.CAFile, err.Error(), "Install the vendor CA certificate at [backend] ca_file; without it the agent trusts no backend.")
		return out
	}

	// The certificate.
	chain, err := LoadChain(cfg.Device.StateDir)
	if errors.Is(err, ErrNotEnrolled) {
		add("fail", ChainPath(cfg.Device.StateDir), "this device is not enrolled: there is no device certificate", "Get an enrollment token for system ID "+cfg.Device.SystemID+" and run: dcagent enroll --token TOKEN")
		return out
	}
	if err != nil {
		add("fail", ChainPath(cfg.Device.StateDir), err.Error(), "Enroll the device again: dcagent enroll --token TOKEN")
		return out
	}
	leaf := chain[0]
	subject := fmt.Sprintf("certificate %s", leaf.SerialNumber.Text(16))
	inter := x509.NewCertPool()
	for _, c := range chain[1:] {
		inter.AddCert(c)
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, CurrentTime: verifyTime(leaf, now), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		add("fail", subject, "the device certificate does not chain to the pinned vendor CA: "+err.Error(), "Check [backend] ca_file; if it is right, enroll again: dcagent enroll --token TOKEN")
		return out
	}
	if leaf.Subject.CommonName != cfg.Device.SystemID {
		add("fail", subject, fmt.Sprintf("the certificate is for system ID %q, the configuration says %q", leaf.Subject.CommonName, cfg.Device.SystemID), "Correct [device] system_id, or enroll with a token for this system ID.")
		return out
	}
	if err := CheckClock(now, leaf); err != nil {
		add("fail", subject, err.Error(), "Set the clock (NTP); if it is right, enroll again with a new token.")
		return out
	}
	renewAt := RenewTime(leaf, cfg.Identity.RenewAt)
	valid := fmt.Sprintf("valid until %s (%s left)", leaf.NotAfter.UTC().Format(time.RFC3339), leaf.NotAfter.Sub(now).Round(time.Minute))
	if now.After(renewAt) {
		add("warn", subject, fmt.Sprintf("renewal has been due since %s and has not happened; %s", renewAt.UTC().Format(time.RFC3339), valid),
			"Check that the daemon runs and reaches the backend ("+cfg.Backend.URL+"); dcagent status shows the last renewal error.")
		return out
	}
	add("ok", subject, fmt.Sprintf("system ID %s, %s, renews from %s", leaf.Subject.CommonName, valid, renewAt.UTC().Format(time.RFC3339)), "")
	return out
}

// inspectKey checks what can be checked of a key without opening it.
func inspectKey(cfg *config.Config, scheme string) []Finding {
	uri := cfg.Identity.KeyURI
	f := Finding{Status: "ok", Subject: keystore.Redact(uri)}
	switch scheme {
	case "file":
		u, err := keystore.ParseFileURI(uri)
		if err != nil {
			return []Finding{{Status: "fail", Subject: f.Subject, Message: err.Error(), Action: "Correct [identity] key_uri."}}
		}
		f.Status = "warn"
		f.Message = "the device key is a plain file (" + u.Resolve(cfg.Device.StateDir) + "): for development only; anyone who copies it becomes this device"
		f.Action = "Use a tpm: or pkcs11: key on a device."
	case "tpm":
		u, err := keystore.ParseTPMURI(uri)
		if err != nil {
			return []Finding{{Status: "fail", Subject: f.Subject, Message: err.Error(), Action: "Correct [identity] key_uri."}}
		}
		if u.Device != "" {
			if _, err := os.Stat(u.Device); err != nil {
				return []Finding{{Status: "fail", Subject: f.Subject, Message: "no TPM device at " + u.Device + ": " + err.Error(), Action: "Load the kernel's TPM driver (tpm_crb or tpm_tis), or give a virtual machine a vTPM."}}
			}
		}
		if u.Handle == 0 {
			if _, err := os.Stat(u.BlobPath(cfg.Device.StateDir)); err != nil {
				return []Finding{{Status: "fail", Subject: f.Subject, Message: "the key blob " + u.BlobPath(cfg.Device.StateDir) + " is missing", Action: "Make the key and enroll: dcagent key generate, then dcagent enroll --token TOKEN."}}
			}
		}
		f.Message = "TPM key at " + u.Where()
	case "pkcs11":
		u, err := keystore.ParsePKCS11URI(uri)
		if err != nil {
			return []Finding{{Status: "fail", Subject: f.Subject, Message: err.Error(), Action: "Correct [identity] key_uri."}}
		}
		if _, err := os.Stat(u.Module()); err != nil {
			return []Finding{{Status: "fail", Subject: f.Subject, Message: "the PKCS#11 module " + u.Module() + " is missing", Action: "Install the token's PKCS#11 library, or correct module-path."}}
		}
		if _, err := u.PIN(); err != nil {
			return []Finding{{Status: "fail", Subject: f.Subject, Message: err.Error(), Action: "Provide the PIN as the key URI's pin-source says."}}
		}
		f.Message = "PKCS#11 key in token " + u.Token + " through " + u.Module()
	default:
		f.Message = "key store " + scheme
	}
	return []Finding{f}
}
