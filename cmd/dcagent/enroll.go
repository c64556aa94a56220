package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/dcagent/dcagent/crypto/identity"
	"github.com/dcagent/dcagent/crypto/keystore"
)

func init() {
	register(command{name: "enroll", summary: "first enrollment with a one-time token: enroll --token T", run: runEnroll})
}

const enrollUsage = `usage: dcagent enroll --token TOKEN [--alg ecc-p256|rsa-2048] [--json]
       dcagent enroll --token-file FILE   (or --token - to read it from stdin)

Enrolls this device with the backend's CA: makes the device key when the
key store ([identity] key_uri) has none yet, sends a CSR signed by it with
the one-time token (and, with a TPM that has an endorsement key
certificate, the TPM's proof that the key lives in it), checks the issued
certificate against the pinned vendor CA ([backend] ca_file), and stores
it in the state directory. The daemon renews it from then on.

A token is a secret: --token-file or stdin keep it out of the process
list. Tokens are single use, expire, and are bound to one system ID.

options:
`

func runEnroll(env *cmdEnv, args []string) int {
	fs := env.newFlags("enroll")
	token := fs.String("token", "", "the one-time enrollment token, or - to read it from stdin")
	tokenFile := fs.String("token-file", "", "read the token from this file")
	alg := fs.String("alg", "ecc-p256", "algorithm of the key made when there is none: ecc-p256 or rsa-2048")
	timeout := fs.Duration("timeout", 2*time.Minute, "give up after this long")
	asJSON := fs.Bool("json", false, "print the result as one JSON object")
	fs.Usage = func() {
		fmt.Fprint(env.stderr, enrollUsage)
		fs.PrintDefaults()
	}
	if ok, st := parseFlags(fs, args); !ok {
		return st
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(env.stderr, "dcagent enroll: unexpected argument %q\n", fs.Arg(0))
		return 2
	}
	tok, err := readToken(*token, *tokenFile, os.Stdin)
	if err != nil {
		return fail(env, "enroll", err)
	}
	algorithm, err := keystore.ParseAlgorithm(*alg)
	if err != nil {
		return fail(env, "enroll", err)
	}
	cfg, err := env.loadConfig()
	if err != nil {
		return fail(env, "enroll", err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	log := slog.New(slog.NewTextHandler(env.stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	id, err := identity.Enroll(ctx, cfg, tok, identity.EnrollOptions{
		Options:     identity.Options{Logger: log},
		GenerateKey: true,
		Algorithm:   algorithm,
	})
	if err != nil {
		return fail(env, "enroll", err)
	}
	defer id.Close()
	st := id.Status()
	_, attested := id.Store().(keystore.Attester)
	fp, _ := keystore.Fingerprint(id.Signer().Public())
	if *asJSON {
		out := struct {
			identity.Status
			Fingerprint string `json:"key_fingerprint"`
			Chain       string `json:"chain_path"`
		}{st, fp, identity.ChainPath(cfg.Device.StateDir)}
		enc := json.NewEncoder(env.stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(out); err != nil {
			return fail(env, "enroll", err)
		}
		return 0
	}
	how := ""
	if attested {
		how = " (key in the TPM)"
	}
	fmt.Fprintf(env.stdout, "enrolled %s%s\ncertificate: serial %s, valid until %s, renews from %s\nkey:         %s\n             %s\nstored in:   %s\n",
		st.SystemID, how, st.Serial, st.NotAfter.UTC().Format(time.RFC3339), st.RenewAt.UTC().Format(time.RFC3339),
		fp, st.KeyStore, identity.ChainPath(cfg.Device.StateDir))
	return 0
}

// readToken takes the token from the flag, a file, or stdin ("-").
func readToken(flagValue, file string, stdin io.Reader) (string, error) {
	if flagValue != "" && file != "" {
		return "", errors.New("give --token or --token-file, not both")
	}
	var raw string
	switch {
	case file != "":
		b, err := os.ReadFile(file)
		if err != nil {
			return "", fmt.Errorf("token file: %w", err)
		}
		raw = string(b)
	case flagValue == "-":
		b, err := io.ReadAll(io.LimitReader(stdin, 4096))
		if err != nil {
			return "", fmt.Errorf("token from stdin: %w", err)
		}
		raw = string(b)
	default:
		raw = flagValue
	}
	tok := strings.TrimSpace(raw)
	if tok == "" {
		return "", errors.New("no token: give --token TOKEN (from the backend: dcsim token), --token-file FILE or --token - for stdin")
	}
	return tok, nil
}
