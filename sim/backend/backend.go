// Package backend composes the reference support backend that `dcsim
// backend`, the demo, the fleet and the end-to-end tests run: the private
// CA (enrollment, renewal, revocation), the event store with its case book,
// the heartbeat service (DTLS and HTTPS), and the remote-access relay with
// the support engineers' API. Everything listens on loopback by default.
//
// One HTTPS server carries, under mutual TLS where a device is involved:
//
//	POST /v1/enroll, /v1/renew      sim/ca
//	PUT  /v1/events/{id}, POST /v1/events/batch   sim/eventstore
//	POST /v1/heartbeat              sim/heartbeat (the HTTPS fallback)
//	/v1/support/access...           sim/relay (support engineers; bearer token)
//	GET  /v1/cases                  the case book, as JSON
//
// The DTLS heartbeat has its own UDP port, the relay its own TLS port.
// Start writes backend.json into the state directory with every address and
// the vendor CA's file, so that other tools (dcsim token, dcsim support,
// the demo) find the backend without flags.
package backend

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/dcagent/dcagent/agent/connecthome/wire"
	"github.com/dcagent/dcagent/crypto/enroll"
	"github.com/dcagent/dcagent/sim/ca"
	"github.com/dcagent/dcagent/sim/cases"
	"github.com/dcagent/dcagent/sim/eventstore"
	hbsvc "github.com/dcagent/dcagent/sim/heartbeat"
	"github.com/dcagent/dcagent/sim/relay"
)

// Options shape a backend. Zero values give a loopback backend on free
// ports.
type Options struct {
	// Dir is the backend's state directory (CA, events, cases).
	Dir string
	// HTTPSAddr, UDPAddr and RelayAddr are where the services listen;
	// empty means 127.0.0.1 on a free port.
	HTTPSAddr, UDPAddr, RelayAddr string
	// Lifetime of device certificates; 0 means the CA's default (30 days).
	Lifetime time.Duration
	// RequireTPM refuses enrollment without TPM attestation, checked
	// against TPMRootsFile (the TPM makers' certificates).
	RequireTPM   bool
	TPMRootsFile string
	// SupportToken, when set, guards the support API.
	SupportToken string
	Logger       *slog.Logger
}

// Backend is a running reference backend.
type Backend struct {
	CA        *ca.CA
	Events    *eventstore.Store
	Cases     *cases.Book
	Heartbeat *hbsvc.Service
	Relay     *relay.Relay

	dir    string
	url    string
	udp    string
	https  *http.Server
	ctx    context.Context
	cancel context.CancelFunc
	done   chan struct{}
}

// Info is what backend.json holds.
type Info struct {
	URL           string `json:"url"`
	HeartbeatAddr string `json:"heartbeat_addr"`
	RelayAddr     string `json:"relay_addr"`
	CAFile        string `json:"ca_file"`
	State         string `json:"state"`
	PID           int    `json:"pid"`
}

// InfoName is the file Start writes into the state directory.
const InfoName = "backend.json"

// Start opens the backend's state and starts every service.
func Start(opts Options) (_ *Backend, err error) {
	if opts.Dir == "" {
		return nil, errors.New("backend: no state directory")
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.HTTPSAddr == "" {
		opts.HTTPSAddr = "127.0.0.1:0"
	}
	if opts.UDPAddr == "" {
		opts.UDPAddr = "127.0.0.1:0"
	}
	if opts.RelayAddr == "" {
		opts.RelayAddr = "127.0.0.1:0"
	}
	if err := os.MkdirAll(opts.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("backend: %w", err)
	}
	log := opts.Logger
	ctx, cancel := context.WithCancel(context.Background())
	b := &Backend{dir: opts.Dir, ctx: ctx, cancel: cancel, done: make(chan struct{})}
	defer func() {
		if err != nil {
			b.Close()
		}
	}()

	if b.CA, err = ca.Open(ca.Config{Dir: ca.DirIn(opts.Dir), Lifetime: opts.Lifetime, RequireTPM: opts.RequireTPM, TPMRootsFile: opts.TPMRootsFile, Logger: log.With("service", "ca")}); err != nil {
		return nil, err
	}
	if b.Events, err = eventstore.OpenWithLogger(filepath.Join(opts.Dir, "events"), log.With("service", "events")); err != nil {
		return nil, err
	}
	if b.Cases, err = cases.New(cases.Options{Path: filepath.Join(opts.Dir, "cases.json"), Logger: log.With("service", "cases")}); err != nil {
		return nil, err
	}
	arrivals, stopArrivals := b.Events.Subscribe(1024)
	go func() {
		defer close(b.done)
		defer stopArrivals()
		b.Cases.Follow(ctx, arrivals)
	}()

	if b.Heartbeat, err = hbsvc.New(hbsvc.Options{
		Cert: b.CA.ServerCertificate(), ClientCAs: b.CA.Pool(),
		AuthenticateCert: b.CA.AuthenticateCert, Authenticate: b.CA.Authenticate,
		Logger: log.With("service", "heartbeat"),
	}); err != nil {
		return nil, err
	}
	ua, err := b.Heartbeat.ListenUDP(opts.UDPAddr)
	if err != nil {
		return nil, fmt.Errorf("backend: heartbeat UDP %s: %w", opts.UDPAddr, err)
	}
	b.udp = ua.String()

	if b.Relay, err = relay.New(relay.Options{
		Cert: b.CA.ServerCertificate(), ClientCAs: b.CA.Pool(),
		Authenticate: b.CA.AuthenticateCert,
		Enqueue:      b.Heartbeat.Enqueue,
		WaitResult:   b.Heartbeat.WaitResult,
		Addr:         opts.RelayAddr,
		SupportToken: opts.SupportToken,
		Logger:       log.With("service", "relay"),
	}); err != nil {
		return nil, err
	}

	ln, err := net.Listen("tcp", opts.HTTPSAddr)
	if err != nil {
		return nil, fmt.Errorf("backend: HTTPS %s: %w", opts.HTTPSAddr, err)
	}
	mux := http.NewServeMux()
	mux.Handle(enroll.PathEnroll, b.CA.Handler())
	mux.Handle(enroll.PathRenew, b.CA.Handler())
	mux.Handle(wire.PathPrefix, b.Events.Handler(b.CA.Authenticate))
	mux.Handle(hbsvc.HTTPSPath, b.Heartbeat.Handler())
	mux.Handle("/v1/support/", b.Relay.SupportHandler())
	mux.HandleFunc("GET /v1/cases", b.serveCases)
	b.https = &http.Server{Handler: mux, TLSConfig: b.CA.ServerTLSConfig(), ReadHeaderTimeout: 10 * time.Second,
		ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelDebug)}
	go b.https.ServeTLS(ln, "", "")
	b.url = "https://" + ln.Addr().String()

	if err := b.writeInfo(); err != nil {
		return nil, err
	}
	log.Info("backend started", "url", b.url, "heartbeat_udp", b.udp, "relay", b.Relay.Addr(), "state", opts.Dir)
	return b, nil
}

func (b *Backend) serveCases(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(b.Cases.List())
}

// URL is the HTTPS base URL.
func (b *Backend) URL() string { return b.url }

// HeartbeatAddr is the DTLS heartbeat's UDP address.
func (b *Backend) HeartbeatAddr() string { return b.udp }

// CAFile is the vendor CA's PEM file, the one a device pins.
func (b *Backend) CAFile() string { return filepath.Join(b.dir, "vendor-ca.pem") }

// Dir is the state directory.
func (b *Backend) Dir() string { return b.dir }

func (b *Backend) writeInfo() error {
	if err := os.WriteFile(b.CAFile(), b.CA.CAPEM(), 0o644); err != nil {
		return fmt.Errorf("backend: %w", err)
	}
	info := Info{URL: b.url, HeartbeatAddr: b.udp, RelayAddr: b.Relay.Addr(), CAFile: b.CAFile(), State: b.dir, PID: os.Getpid()}
	data, _ := json.MarshalIndent(info, "", "  ")
	tmp := filepath.Join(b.dir, InfoName+".tmp")
	if err := os.WriteFile(tmp, append(data, '\n'), 0o644); err != nil {
		return fmt.Errorf("backend: %w", err)
	}
	return os.Rename(tmp, filepath.Join(b.dir, InfoName))
}

// ReadInfo reads backend.json from a backend's state directory.
func ReadInfo(dir string) (*Info, error) {
	data, err := os.ReadFile(filepath.Join(dir, InfoName))
	if err != nil {
		return nil, fmt.Errorf("backend: no running backend's %s in %s (start one with dcsim backend --state %s): %w", InfoName, dir, dir, err)
	}
	var info Info
	if err := json.Unmarshal(data, &info); err != nil {
		return nil, fmt.Errorf("backend: %s: %w", filepath.Join(dir, InfoName), err)
	}
	return &info, nil
}

// Close stops every service.
func (b *Backend) Close() error {
	b.cancel()
	if b.https != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		b.https.Shutdown(ctx)
		cancel()
	}
	if b.Relay != nil {
		b.Relay.Close()
	}
	if b.Heartbeat != nil {
		b.Heartbeat.Close()
	}
	if b.Cases != nil {
		select {
		case <-b.done:
		case <-time.After(3 * time.Second):
		}
	}
	if b.Events != nil {
		b.Events.Close()
	}
	os.Remove(filepath.Join(b.dir, InfoName))
	return nil
}
