package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/dcagent/dcagent/sim/backend"
	"github.com/dcagent/dcagent/sim/cases"
)

func init() {
	register(command{name: "backend", summary: "run the reference support backend on loopback", run: runBackend})
}

const backendUsage = `usage: dcsim backend --state DIR [flags]

Runs the reference support backend: the private CA (enrollment, renewal,
revocation), event intake with its case book, the heartbeat service over
DTLS and HTTPS, and the remote-access relay with the support API. Every
service listens on 127.0.0.1 unless told otherwise. The addresses and the
vendor CA are written to DIR/backend.json and DIR/vendor-ca.pem; make an
enrollment token with: dcsim token --state DIR --system-id ID.

`

func runBackend(stdout, stderr io.Writer, args []string) int {
	fs := newFlags("backend", stderr)
	fs.Usage = func() { fmt.Fprint(stderr, backendUsage); fs.PrintDefaults() }
	var o backend.Options
	fs.StringVar(&o.Dir, "state", "", "state directory (required)")
	fs.StringVar(&o.HTTPSAddr, "https", "127.0.0.1:8443", "HTTPS address (enrollment, events, heartbeat fallback, support API)")
	fs.StringVar(&o.UDPAddr, "udp", "127.0.0.1:8444", "DTLS heartbeat address")
	fs.StringVar(&o.RelayAddr, "relay", "127.0.0.1:8445", "remote-access relay address")
	fs.DurationVar(&o.Lifetime, "lifetime", 0, "device certificate lifetime (default 30 days)")
	fs.BoolVar(&o.RequireTPM, "require-tpm", false, "refuse enrollment without TPM attestation")
	fs.StringVar(&o.TPMRootsFile, "tpm-roots", "", "PEM file of the TPM makers' certificates")
	fs.StringVar(&o.SupportToken, "support-token", os.Getenv("DCSIM_SUPPORT_TOKEN"), "bearer token for the support API (or $DCSIM_SUPPORT_TOKEN)")
	verbose := fs.Bool("v", false, "log every service's lines")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if o.Dir == "" {
		fmt.Fprintln(stderr, "dcsim backend: --state DIR is required")
		return 2
	}
	level := slog.LevelWarn
	if *verbose {
		level = slog.LevelDebug
	}
	o.Logger = slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	b, err := backend.Start(o)
	if err != nil {
		fmt.Fprintf(stderr, "dcsim backend: %v\n", err)
		return 1
	}
	defer b.Close()
	fmt.Fprintf(stdout, "backend up: %s, heartbeat udp %s, relay %s\nvendor CA: %s\n", b.URL(), b.HeartbeatAddr(), b.Relay.Addr(), b.CAFile())
	b.Cases.OnOpen(func(c cases.Case) {
		fmt.Fprintf(stdout, "case %s opened for %s: %s; dispatch %s\n", c.ID, c.SystemID, c.Summary, c.Part.Description)
	})
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	events, stopEvents := b.Events.Subscribe(256)
	defer stopEvents()
	for {
		select {
		case <-ctx.Done():
			fmt.Fprintln(stdout, "backend stopping")
			return 0
		case r := <-events:
			if ev, err := r.Event(); err == nil {
				fmt.Fprintf(stdout, "event %s from %s: %s (severity %d)\n", ev.ID, ev.SystemID, ev.Type, ev.Severity)
			}
		}
	}
}
