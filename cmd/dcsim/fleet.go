package main

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/dcagent/dcagent/agent/config"
	"github.com/dcagent/dcagent/agent/heartbeat"
	"github.com/dcagent/dcagent/agent/work"
	"github.com/dcagent/dcagent/crypto/enroll"
	"github.com/dcagent/dcagent/crypto/keystore"
	"github.com/dcagent/dcagent/sim/ca"
	hbsvc "github.com/dcagent/dcagent/sim/heartbeat"
)

func init() {
	register(command{name: "fleet", summary: "many simulated agents heartbeating against the backend: fleet --agents N", run: runFleet})
}

const fleetUsage = `usage: dcsim fleet --agents N [options]

Runs N agents in this one process. Each has a key of its own, a plain
file key (development only: the device keys of a real fleet live in a
TPM or a PKCS#11 token), enrolls with a one-time token at the backend's
CA, and heartbeats over DTLS with the HTTPS fallback, reporting a
simulated telemetry summary and answering work.

Without --backend-url the fleet starts its own reference heartbeat
service and CA on loopback, and with --work-every queues work for random
agents. With --backend-url, --backend-udp and --state it runs against a
running backend (dcsim backend), minting its tokens in that backend's
state directory as dcsim token does.

It prints a line every --report and a summary at the end (--duration
after the agents enrolled, or SIGINT/SIGTERM); --json makes the summary
JSON. The exit status is 0 when every agent enrolled and was answering
at the end.

options:
`

type fleetOptions struct {
	agents      int
	interval    time.Duration
	duration    time.Duration
	report      time.Duration
	workEvery   time.Duration
	backendURL  string
	backendUDP  string
	state       string
	keys        string
	concurrency int
	jsonOut     bool
	verbose     bool
}

// FleetSummary is what dcsim fleet reports at the end (--json).
type FleetSummary struct {
	Agents         int     `json:"agents"`
	Enrolled       int     `json:"enrolled"`
	EnrollFailures int     `json:"enroll_failures"`
	Answering      int     `json:"answering"` // agents whose last heartbeat was answered within 3 intervals
	OnDTLS         int     `json:"on_dtls"`
	OnHTTPS        int     `json:"on_https"`
	Handshakes     int     `json:"dtls_handshakes"`
	WorkQueued     int     `json:"work_queued"`
	WorkDone       int64   `json:"work_done"`
	KeyKind        string  `json:"key_kind"`
	Seconds        float64 `json:"seconds"` // after enrolling
	Backend        string  `json:"backend"`
	// ServiceHeartbeats is what the fleet's own service answered (0 for
	// an outside backend).
	ServiceHeartbeats int64 `json:"service_heartbeats,omitempty"`
}

func runFleet(stdout, stderr io.Writer, args []string) int {
	fs := newFlags("fleet", stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, fleetUsage)
		fs.PrintDefaults()
	}
	var o fleetOptions
	fs.IntVar(&o.agents, "agents", 10, "how many agents")
	fs.DurationVar(&o.interval, "interval", 10*time.Second, "heartbeat interval of each agent")
	fs.DurationVar(&o.duration, "duration", 0, "run this long once enrolled (0: until SIGINT or SIGTERM)")
	fs.DurationVar(&o.report, "report", 10*time.Second, "print a status line this often (0: never)")
	fs.DurationVar(&o.workEvery, "work-every", 0, "queue a collect-now item for a random agent this often (own backend only)")
	fs.StringVar(&o.backendURL, "backend-url", "", "the backend's HTTPS base URL (enrollment and heartbeat fallback); empty: start one here")
	fs.StringVar(&o.backendUDP, "backend-udp", "", "the backend's DTLS heartbeat address host:port (with --backend-url)")
	fs.StringVar(&o.state, "state", "", "the backend's state directory, where its CA keeps tokens (with --backend-url)")
	fs.StringVar(&o.keys, "keys", "", "directory for the agents' file keys (default: a temporary one, removed at the end)")
	fs.IntVar(&o.concurrency, "concurrency", 16, "agents enrolling at once")
	fs.BoolVar(&o.jsonOut, "json", false, "print the summary as JSON")
	fs.BoolVar(&o.verbose, "v", false, "log the agents' own lines to stderr")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "dcsim fleet: unexpected argument %q\n", fs.Arg(0))
		return 2
	}
	if err := o.check(); err != nil {
		fmt.Fprintf(stderr, "dcsim fleet: %v\n", err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	sum, err := fleet(ctx, o, stdout, stderr)
	if err != nil {
		fmt.Fprintf(stderr, "dcsim fleet: %v\n", err)
		return 1
	}
	if o.jsonOut {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		enc.Encode(sum)
	} else {
		fmt.Fprintf(stdout, "fleet: %d agents (%s keys), %d enrolled, %d answering (%d dtls, %d https), %d dtls handshakes, work %d queued / %d done, %.0fs against %s\n",
			sum.Agents, sum.KeyKind, sum.Enrolled, sum.Answering, sum.OnDTLS, sum.OnHTTPS, sum.Handshakes, sum.WorkQueued, sum.WorkDone, sum.Seconds, sum.Backend)
	}
	if sum.Enrolled < sum.Agents || sum.Answering < sum.Enrolled {
		return 1
	}
	return 0
}

func (o *fleetOptions) check() error {
	switch {
	case o.agents < 1:
		return fmt.Errorf("--agents %d: at least 1", o.agents)
	case o.interval < 100*time.Millisecond:
		return fmt.Errorf("--interval %s: at least 100ms", o.interval)
	case o.concurrency < 1:
		return fmt.Errorf("--concurrency %d: at least 1", o.concurrency)
	case o.backendURL != "" && (o.backendUDP == "" || o.state == ""):
		return errors.New("--backend-url needs --backend-udp and --state (the backend's state directory, for enrollment tokens)")
	case o.backendURL == "" && (o.backendUDP != "" || o.state != ""):
		return errors.New("--backend-udp and --state go with --backend-url")
	case o.duration > 0 && o.duration < 2*o.interval:
		return fmt.Errorf("--duration %s: at least twice --interval (%s), so that every agent has heartbeated", o.duration, o.interval)
	case o.backendURL != "" && o.workEvery > 0:
		return errors.New("--work-every needs the fleet's own backend (no --backend-url)")
	}
	return nil
}

// ownBackend is the reference CA and heartbeat service on loopback.
type ownBackend struct {
	ca    *ca.CA
	svc   *hbsvc.Service
	https *http.Server
	url   string
	udp   string
	dir   string
}

func startOwnBackend(log *slog.Logger) (*ownBackend, error) {
	dir, err := os.MkdirTemp("", "dcsim-fleet-backend-")
	if err != nil {
		return nil, err
	}
	b := &ownBackend{dir: dir}
	b.ca, err = ca.Open(ca.Config{Dir: ca.DirIn(dir), Logger: log})
	if err != nil {
		b.close()
		return nil, err
	}
	b.svc, err = hbsvc.New(hbsvc.Options{
		Cert: b.ca.ServerCertificate(), ClientCAs: b.ca.Pool(),
		AuthenticateCert: b.ca.AuthenticateCert, Authenticate: b.ca.Authenticate,
		Logger: log,
	})
	if err != nil {
		b.close()
		return nil, err
	}
	ua, err := b.svc.ListenUDP("127.0.0.1:0")
	if err != nil {
		b.close()
		return nil, err
	}
	b.udp = ua.String()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.close()
		return nil, err
	}
	mux := http.NewServeMux()
	mux.Handle(enroll.PathEnroll, b.ca.Handler())
	mux.Handle(enroll.PathRenew, b.ca.Handler())
	mux.Handle(hbsvc.HTTPSPath, b.svc.Handler())
	b.https = &http.Server{Handler: mux, TLSConfig: b.ca.ServerTLSConfig(), ReadHeaderTimeout: 10 * time.Second}
	go b.https.ServeTLS(ln, "", "")
	b.url = "https://" + ln.Addr().String()
	return b, nil
}

func (b *ownBackend) close() {
	if b.https != nil {
		b.https.Close()
	}
	if b.svc != nil {
		b.svc.Close()
	}
	os.RemoveAll(b.dir)
}

// fleetAgent is one simulated device.
type fleetAgent struct {
	id     string
	client *heartbeat.Client
	tele   *simTelemetry
}

// simTelemetry is a device's simulated state: drives that now and then
// move towards failure, a spool backlog that comes and goes, a sensor
// alarm once in a while.
type simTelemetry struct {
	mu  sync.Mutex
	rng *rand.Rand
	t   heartbeat.Telemetry
}

func newSimTelemetry(seed uint64, notAfter int64) *simTelemetry {
	r := rand.New(rand.NewPCG(seed, 0x5eed))
	drives := uint32(4 + r.IntN(21))
	return &simTelemetry{rng: r, t: heartbeat.Telemetry{DrivesOK: drives, CertNotAfter: notAfter, AgentVersion: "dcsim-fleet"}}
}

func (s *simTelemetry) next() heartbeat.Telemetry {
	s.mu.Lock()
	defer s.mu.Unlock()
	t := &s.t
	switch x := s.rng.IntN(1000); {
	case x < 3 && t.DrivesOK > 0:
		t.DrivesOK--
		t.DrivesWatch++
	case x < 4 && t.DrivesWatch > 0:
		t.DrivesWatch--
		t.DrivesWarn++
	case x < 5 && t.DrivesWarn > 0:
		t.DrivesWarn--
		t.DrivesFail++
	case x < 40:
		t.SpoolBacklog = uint32(s.rng.IntN(20))
	case x < 45:
		t.SensorAlarms = uint32(s.rng.IntN(2))
	}
	return *t
}

// simWork answers work as a simulated device would.
func simWork(done *atomic.Int64) func(context.Context, work.Item) work.Result {
	return func(ctx context.Context, it work.Item) work.Result {
		done.Add(1)
		switch it.Kind {
		case work.KindCollectNow:
			return work.Result{OK: true, Detail: "simulated: health report queued"}
		case work.KindRemoteAccess:
			return work.Result{OK: false, Detail: "simulated device: no local service to bridge"}
		default:
			return work.Result{OK: true, Detail: "simulated: " + string(it.Kind)}
		}
	}
}

func fleet(ctx context.Context, o fleetOptions, stdout, stderr io.Writer) (*FleetSummary, error) {
	start := time.Now()
	quiet := slog.New(slog.DiscardHandler)
	agentLog := quiet
	if o.verbose {
		agentLog = slog.New(slog.NewTextHandler(stderr, nil))
	}

	var (
		authority  *ca.CA
		own        *ownBackend
		backendURL = o.backendURL
		backendUDP = o.backendUDP
		err        error
	)
	if backendURL == "" {
		if own, err = startOwnBackend(quiet); err != nil {
			return nil, fmt.Errorf("starting the fleet's own backend: %w", err)
		}
		defer own.close()
		authority, backendURL, backendUDP = own.ca, own.url, own.udp
		fmt.Fprintf(stderr, "dcsim fleet: own backend on %s (https) and %s (dtls)\n", backendURL, backendUDP)
	} else {
		if authority, err = ca.Open(ca.Config{Dir: ca.DirIn(o.state), Logger: quiet}); err != nil {
			return nil, fmt.Errorf("the backend's CA under %s: %w", o.state, err)
		}
	}
	keysDir := o.keys
	if keysDir == "" {
		if keysDir, err = os.MkdirTemp("", "dcsim-fleet-keys-"); err != nil {
			return nil, err
		}
		defer os.RemoveAll(keysDir)
	}
	fmt.Fprintf(stderr, "dcsim fleet: %d agents with file keys under %s (development only: a real device's key lives in a TPM or a PKCS#11 token)\n", o.agents, keysDir)

	roots := authority.Pool()
	be := &enroll.Backend{URL: backendURL, Roots: roots, Timeout: 30 * time.Second, Logger: quiet}
	agents := make([]*fleetAgent, o.agents)
	var enrollFails atomic.Int64
	var workDone atomic.Int64
	var next atomic.Int64
	var wg sync.WaitGroup
	runCtx, cancelAgents := context.WithCancel(context.Background())
	defer cancelAgents()
	var runWG sync.WaitGroup
	for w := 0; w < o.concurrency; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				i := int(next.Add(1) - 1)
				if i >= o.agents {
					return
				}
				a, err := newFleetAgent(ctx, i, o, keysDir, authority, be, backendURL, backendUDP, agentLog, &workDone)
				if err != nil {
					enrollFails.Add(1)
					fmt.Fprintf(stderr, "dcsim fleet: agent %d: %v\n", i, err)
					continue
				}
				agents[i] = a
				runWG.Add(1)
				go func() {
					defer runWG.Done()
					// Spread the fleet over the interval, as devices that
					// boot at different times are.
					select {
					case <-time.After(time.Duration(rand.Int64N(int64(o.interval)))):
					case <-runCtx.Done():
						return
					}
					a.client.Run(runCtx)
				}()
			}
		}()
	}
	wg.Wait()
	enrolled := 0
	for _, a := range agents {
		if a != nil {
			enrolled++
		}
	}
	fmt.Fprintf(stderr, "dcsim fleet: %d agents enrolled in %.1fs\n", enrolled, time.Since(start).Seconds())
	// --duration is the time the fleet runs after enrolling.
	if o.duration > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, o.duration)
		defer cancel()
	}
	runStart := time.Now()

	queued := 0
	var workTick <-chan time.Time
	if o.workEvery > 0 && own != nil {
		t := time.NewTicker(o.workEvery)
		defer t.Stop()
		workTick = t.C
	}
	var reportTick <-chan time.Time
	if o.report > 0 {
		t := time.NewTicker(o.report)
		defer t.Stop()
		reportTick = t.C
	}
loop:
	for {
		select {
		case <-ctx.Done():
			break loop
		case <-workTick:
			a := agents[rand.IntN(len(agents))]
			if a == nil {
				continue
			}
			queued++
			if err := own.svc.Enqueue(a.id, work.Item{ID: fmt.Sprintf("fleet-work-%d", queued), Kind: work.KindCollectNow}); err != nil {
				fmt.Fprintf(stderr, "dcsim fleet: queue work: %v\n", err)
			}
		case <-reportTick:
			s := summarize(agents, o.interval)
			fmt.Fprintf(stdout, "fleet: %s %d/%d answering (%d dtls, %d https), %d handshakes, work %d/%d\n",
				time.Now().Format(time.TimeOnly), s.Answering, enrolled, s.OnDTLS, s.OnHTTPS, s.Handshakes, workDone.Load(), queued)
		}
	}
	sum := summarize(agents, o.interval)
	cancelAgents()
	runWG.Wait()
	sum.Agents, sum.Enrolled, sum.EnrollFailures = o.agents, enrolled, int(enrollFails.Load())
	sum.WorkQueued, sum.WorkDone = queued, workDone.Load()
	sum.KeyKind = "file"
	sum.Seconds = time.Since(runStart).Seconds()
	sum.Backend = backendURL
	if own != nil {
		st := own.svc.Stats()
		sum.ServiceHeartbeats = st.DTLSHeartbeats + st.HTTPSHeartbeats
	}
	return &sum, nil
}

func newFleetAgent(ctx context.Context, i int, o fleetOptions, keysDir string, authority *ca.CA, be *enroll.Backend,
	backendURL, backendUDP string, log *slog.Logger, workDone *atomic.Int64) (*fleetAgent, error) {
	id := fmt.Sprintf("SIM-%06d", i)
	dir := filepath.Join(keysDir, id)
	store, err := keystore.Open(ctx, "file:"+filepath.Join(dir, "device-key.pem"), keystore.Options{})
	if err != nil {
		return nil, err
	}
	defer store.Close()
	signer, err := store.Signer(ctx)
	if errors.Is(err, keystore.ErrNoKey) {
		signer, err = store.Generate(ctx, keystore.ECCP256)
	}
	if err != nil {
		return nil, err
	}
	token, err := authority.NewToken(id, time.Hour)
	if err != nil {
		return nil, err
	}
	chain, err := enroll.Enroll(ctx, be, enroll.Device{SystemID: id, Model: "sim-fleet", Signer: signer}, token, nil)
	if err != nil {
		return nil, err
	}
	cert := tls.Certificate{PrivateKey: signer, Leaf: chain[0]}
	for _, c := range chain {
		cert.Certificate = append(cert.Certificate, c.Raw)
	}
	cfg := config.Default()
	cfg.Device.SystemID = id
	cfg.Backend.URL = backendURL
	cfg.Backend.HeartbeatAddr = backendUDP
	cfg.Heartbeat.Interval = o.interval
	cfg.Heartbeat.ReplyTimeout = min(5*time.Second, max(o.interval/2, 500*time.Millisecond))
	cfg.Heartbeat.UDPProbeInterval = max(o.interval*5, time.Second)
	cfg.Heartbeat.BackoffMin = max(o.interval/10, 100*time.Millisecond)
	cfg.Heartbeat.BackoffMax = max(o.interval*10, time.Second)
	cfg.Heartbeat.TelemetryEvery = max(o.interval*60, time.Minute)
	a := &fleetAgent{id: id}
	a.tele = newSimTelemetry(uint64(i), chain[0].NotAfter.Unix())
	a.client, err = heartbeat.New(heartbeat.Options{
		Config: cfg, Certificate: cert, Roots: be.Roots,
		Telemetry: a.tele.next, Work: simWork(workDone), Logger: log.With("system_id", id),
		// One process holds the whole fleet: nobody watches netlink.
		NetworkWatch: heartbeat.NoNetworkWatch,
	})
	if err != nil {
		return nil, err
	}
	return a, nil
}

func summarize(agents []*fleetAgent, interval time.Duration) FleetSummary {
	var s FleetSummary
	for _, a := range agents {
		if a == nil {
			continue
		}
		st := a.client.Status()
		s.Handshakes += st.Handshakes
		if !st.LastHeartbeat.IsZero() && time.Since(st.LastHeartbeat) < 3*interval {
			s.Answering++
			switch st.Channel {
			case heartbeat.ChannelDTLS:
				s.OnDTLS++
			case heartbeat.ChannelHTTPS:
				s.OnHTTPS++
			}
		}
	}
	return s
}
