package main

import (
	"context"
	"crypto"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/dcagent/dcagent/agent/config"
	"github.com/dcagent/dcagent/crypto/keystore"
	_ "github.com/dcagent/dcagent/crypto/keystore/all" // tpm:, pkcs11:, file:
)

func init() {
	register(command{name: "key", summary: "create and show the device key: key generate|show [--uri URI]", run: runKey})
}

const keyUsage = `usage: dcagent key generate [--uri URI] [--alg ecc-p256|rsa-2048] [--json]
       dcagent key show [--uri URI] [--json]

generate makes the device key inside its key store: the TPM, a PKCS#11
token, or (for development only) a file. It refuses to replace a key that
exists: the device's identity hangs on it.
show prints the public key, its fingerprint and where the key lives.

URI defaults to [identity] key_uri of the configuration. Forms:
  tpm:/dev/tpmrm0                      the TPM (blob in <state_dir>/keys/device.tpmkey)
  tpm://127.0.0.1:2321?key=device      a software TPM on TCP (swtpm)
  tpm:/dev/tpmrm0?handle=0x81000010    a key persisted inside the TPM
  pkcs11:token=L;object=device?module-path=/usr/lib/x.so&pin-source=file:/etc/dcagent/pin
  file:dev-key.pem                     development only
A PIN never goes in the URI (pin-value is refused): use pin-source=file:
or the DCAGENT_PKCS11_PIN environment variable.

options:
`

// keyInfo is what key generate and key show print.
type keyInfo struct {
	URI         string `json:"uri"`
	Algorithm   string `json:"algorithm"`
	Fingerprint string `json:"fingerprint"`
	Location    string `json:"location"`
	PublicKey   string `json:"public_key_pem"`
}

func runKey(env *cmdEnv, args []string) int {
	if len(args) == 0 || (args[0] != "generate" && args[0] != "show") {
		fmt.Fprint(env.stderr, keyUsage)
		if len(args) > 0 && (args[0] == "-h" || args[0] == "--help" || args[0] == "help") {
			return 0
		}
		return 2
	}
	sub := args[0]
	fs := env.newFlags("key " + sub)
	uri := fs.String("uri", "", "key URI (default: [identity] key_uri)")
	alg := fs.String("alg", "ecc-p256", "key algorithm for generate: ecc-p256 or rsa-2048")
	stateDir := fs.String("state-dir", "", "state directory (default: [device] state_dir)")
	asJSON := fs.Bool("json", false, "print one JSON object")
	fs.Usage = func() {
		fmt.Fprint(env.stderr, keyUsage)
		fs.PrintDefaults()
	}
	if ok, st := parseFlags(fs, args[1:]); !ok {
		return st
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(env.stderr, "dcagent key %s: unexpected argument %q\n", sub, fs.Arg(0))
		return 2
	}
	algorithm, err := keystore.ParseAlgorithm(*alg)
	if err != nil {
		return fail(env, "key "+sub, err)
	}

	// The configuration names the key and the state directory; with both
	// given on the command line, none is needed.
	var cfg *config.Config
	if *uri == "" || *stateDir == "" {
		cfg, err = env.loadConfig()
		if err != nil {
			return fail(env, "key "+sub, err)
		}
		if *uri == "" {
			*uri = cfg.Identity.KeyURI
		}
		if *stateDir == "" {
			*stateDir = cfg.Device.StateDir
		}
	}
	if *uri == "" {
		return fail(env, "key "+sub, errors.New("no key URI: give --uri or set [identity] key_uri"))
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	log := slog.New(slog.NewTextHandler(env.stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	store, err := keystore.Open(ctx, *uri, keystore.Options{StateDir: *stateDir, Logger: log})
	if err != nil {
		return fail(env, "key "+sub, err)
	}
	defer store.Close()

	var signer crypto.Signer
	if sub == "generate" {
		signer, err = store.Generate(ctx, algorithm)
	} else {
		signer, err = store.Signer(ctx)
	}
	if err != nil {
		return fail(env, "key "+sub, err)
	}
	info, err := describeKey(keystore.Redact(*uri), store, signer.Public())
	if err != nil {
		return fail(env, "key "+sub, err)
	}
	if *asJSON {
		enc := json.NewEncoder(env.stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(info); err != nil {
			return fail(env, "key "+sub, err)
		}
		return 0
	}
	if sub == "generate" {
		fmt.Fprintln(env.stdout, "key generated")
	}
	fmt.Fprintf(env.stdout, "key:         %s\npublic key:  %s\nfingerprint: %s\nlives in:    %s\n%s", info.URI, info.Algorithm, info.Fingerprint, info.Location, info.PublicKey)
	return 0
}

func describeKey(uri string, store keystore.Store, pub crypto.PublicKey) (*keyInfo, error) {
	fp, err := keystore.Fingerprint(pub)
	if err != nil {
		return nil, err
	}
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, err
	}
	return &keyInfo{
		URI:         uri,
		Algorithm:   keystore.DescribePublic(pub),
		Fingerprint: fp,
		Location:    store.Describe(),
		PublicKey:   string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})),
	}, nil
}
