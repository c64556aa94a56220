package heartbeat

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/dtls/v3"

	hb "github.com/dcagent/dcagent/agent/heartbeat"
	"github.com/dcagent/dcagent/crypto/tlsconf"
	"github.com/dcagent/dcagent/internal/testpki"
)

// The load benchmark runs the service in the benchmark's process and the
// devices in a child process (this test binary again, started with
// HEARTBEAT_LOADGEN set), so that the service's memory can be measured
// alone. Both share the machine's cores, as they would not in
// production: the figures are a floor.
//
//	go test -run '^$' -bench BackendLoad -benchtime 1x ./sim/heartbeat
//
// HEARTBEAT_LOAD_AGENTS and HEARTBEAT_LOAD_SECONDS shrink a run;
// HEARTBEAT_LOAD_RATES (e.g. "30000,60000,150000") sets the offered rates.

func TestMain(m *testing.M) {
	if cfg := os.Getenv("HEARTBEAT_LOADGEN"); cfg != "" {
		os.Exit(loadgenMain(cfg))
	}
	os.Exit(m.Run())
}

type loadConfig struct {
	Server      string        `json:"server"`
	CACertPEM   []byte        `json:"ca_cert"`
	CAKeyPEM    []byte        `json:"ca_key"`
	Agents      int           `json:"agents"`
	Rate        int           `json:"rate"` // heartbeats a second, all agents together
	Duration    time.Duration `json:"duration"`
	Concurrency int           `json:"concurrency"` // handshakes at once
}

type loadReady struct {
	Handshakes     int     `json:"handshakes"`
	HandshakeSecs  float64 `json:"handshake_secs"`
	HandshakeFails int     `json:"handshake_fails"`
}

type loadResult struct {
	Sent     int64   `json:"sent"`
	Answered int64   `json:"answered"`
	Secs     float64 `json:"secs"`
	P50us    float64 `json:"p50_us"`
	P99us    float64 `json:"p99_us"`
	MaxRate  float64 `json:"achieved_send_rate"`
}

// histogram counts latencies in buckets 5% apart, from 1 µs.
type histogram struct{ b [400]atomic.Int64 }

func (h *histogram) add(d time.Duration) {
	us := float64(d) / float64(time.Microsecond)
	i := 0
	if us > 1 {
		i = int(math.Log(us) / math.Log(1.05))
	}
	if i >= len(h.b) {
		i = len(h.b) - 1
	}
	h.b[i].Add(1)
}

func (h *histogram) quantile(q float64) float64 {
	var total int64
	for i := range h.b {
		total += h.b[i].Load()
	}
	if total == 0 {
		return 0
	}
	want := int64(math.Ceil(q * float64(total)))
	var seen int64
	for i := range h.b {
		seen += h.b[i].Load()
		if seen >= want {
			return math.Pow(1.05, float64(i+1))
		}
	}
	return math.Inf(1)
}

// loadgenMain is the child: it makes the devices, reports ready, waits
// for "go" on stdin, offers the load and reports the result.
func loadgenMain(path string) int {
	fail := func(err error) int { fmt.Fprintln(os.Stderr, "loadgen:", err); return 1 }
	raw, err := os.ReadFile(path)
	if err != nil {
		return fail(err)
	}
	var cfg loadConfig
	if err := json.Unmarshal(raw, &cfg); err != nil {
		return fail(err)
	}
	caBlock, _ := pem.Decode(cfg.CACertPEM)
	keyBlock, _ := pem.Decode(cfg.CAKeyPEM)
	if caBlock == nil || keyBlock == nil {
		return fail(fmt.Errorf("no CA"))
	}
	caCert, err := x509.ParseCertificate(caBlock.Bytes)
	if err != nil {
		return fail(err)
	}
	caKey, err := x509.ParseECPrivateKey(keyBlock.Bytes)
	if err != nil {
		return fail(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(caCert)
	server, err := net.ResolveUDPAddr("udp", cfg.Server)
	if err != nil {
		return fail(err)
	}

	// Devices: a key and certificate each, then a handshake each.
	clients := make([]*LightClient, cfg.Agents)
	var next atomic.Int64
	var fails atomic.Int64
	start := time.Now()
	var wg sync.WaitGroup
	for w := 0; w < cfg.Concurrency; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= cfg.Agents {
					return
				}
				id := fmt.Sprintf("SYS-LOAD-%05d", i)
				cert, err := issueDevice(caCert, caKey, id)
				if err != nil {
					fails.Add(1)
					continue
				}
				dc, _ := tlsconf.DTLSClient(pool, cert, "localhost")
				for try := 0; try < 3 && clients[i] == nil; try++ {
					ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
					c, err := DialLight(ctx, server, dc, id)
					cancel()
					if err == nil {
						// The first heartbeat ends the handshake's grace
						// at the service, as a real device's does.
						if _, _, _, err = c.Exchange(c.NewHeartbeat(), 10*time.Second); err == nil {
							clients[i] = c
							break
						}
						c.Close()
					}
				}
				if clients[i] == nil {
					fails.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	hsSecs := time.Since(start).Seconds()
	var live []*LightClient
	for _, c := range clients {
		if c != nil {
			live = append(live, c)
		}
	}
	ready, _ := json.Marshal(loadReady{Handshakes: len(live), HandshakeSecs: hsSecs, HandshakeFails: int(fails.Load())})
	fmt.Println(string(ready))
	if _, err := bufio.NewReader(os.Stdin).ReadString('\n'); err != nil {
		return fail(err)
	}
	if len(live) == 0 {
		return fail(fmt.Errorf("no device connected"))
	}

	// Load: each device has one heartbeat out at a time at most; senders
	// go round the devices at the offered rate.
	// A slot remembers a device's last few heartbeats, so that a reply
	// that comes after the next heartbeat went out still counts.
	type outstanding struct {
		echo   string
		sentAt int64
	}
	type slot struct {
		mu   sync.Mutex
		ring [16]outstanding
		n    int
	}
	slots := make([]slot, len(live))
	var hist histogram
	var sent, answered atomic.Int64
	stop := make(chan struct{})
	var rwg sync.WaitGroup
	for i, c := range live {
		rwg.Add(1)
		go func() {
			defer rwg.Done()
			for {
				r, _, err := c.ReadReply(time.Time{})
				if err != nil {
					return
				}
				sl := &slots[i]
				sl.mu.Lock()
				for k := range sl.ring {
					if o := &sl.ring[k]; o.sentAt != 0 && o.echo == string(r.Echo) {
						hist.add(time.Duration(time.Now().UnixNano() - o.sentAt))
						answered.Add(1)
						o.sentAt = 0
						break
					}
				}
				sl.mu.Unlock()
			}
		}()
	}
	senders := runtime.GOMAXPROCS(0)
	loadStart := time.Now()
	var swg sync.WaitGroup
	for s := 0; s < senders; s++ {
		swg.Add(1)
		go func() {
			defer swg.Done()
			perSec := float64(cfg.Rate) / float64(senders)
			idx := s
			done := 0.0
			tick := time.NewTicker(time.Millisecond)
			defer tick.Stop()
			for {
				select {
				case <-stop:
					return
				case now := <-tick.C:
					due := perSec * now.Sub(loadStart).Seconds()
					for done < due {
						i := idx % len(live)
						idx += senders
						c := live[i]
						h := c.NewHeartbeat()
						sl := &slots[i]
						sl.mu.Lock()
						sl.ring[sl.n%len(sl.ring)] = outstanding{string(hb.EchoFor(c.SystemID, h.Seq, h.Nonce)), time.Now().UnixNano()}
						sl.n++
						sl.mu.Unlock()
						if _, err := c.Send(h); err == nil {
							sent.Add(1)
						}
						done++
					}
				}
			}
		}()
	}
	time.Sleep(cfg.Duration)
	close(stop)
	swg.Wait()
	secs := time.Since(loadStart).Seconds()
	time.Sleep(500 * time.Millisecond) // replies in flight
	for _, c := range live {
		c.Close()
	}
	rwg.Wait()
	res, _ := json.Marshal(loadResult{
		Sent: sent.Load(), Answered: answered.Load(), Secs: secs,
		P50us: hist.quantile(0.5), P99us: hist.quantile(0.99), MaxRate: float64(sent.Load()) / secs,
	})
	fmt.Println(string(res))
	return 0
}

func issueDevice(ca *x509.Certificate, caKey *ecdsa.PrivateKey, id string) (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, err
	}
	serial, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 120))
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: id, OrganizationalUnit: []string{"load-model"}},
		NotBefore:    time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		return tls.Certificate{}, err
	}
	leaf, _ := x509.ParseCertificate(der)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, nil
}

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

func liveBytes() uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc + m.StackInuse
}

// BenchmarkBackendLoad: 10,000 devices with a DTLS session each; the
// aim is 30,000 heartbeats a second answered, and at twice that offered
// the excess shed while the service keeps answering. Reported: answered
// and offered heartbeats a second, the share answered, p50/p99 round
// trip, what the service shed (stale in its queue) and what the kernel
// dropped, the service's memory per connected device, and the rate of
// the 10,000 handshakes that set it up.
func BenchmarkBackendLoad(b *testing.B) {
	agents := envInt("HEARTBEAT_LOAD_AGENTS", 10000)
	secs := envInt("HEARTBEAT_LOAD_SECONDS", 10)
	rates := []int{30000, 60000}
	if v := os.Getenv("HEARTBEAT_LOAD_RATES"); v != "" {
		rates = nil
		for _, f := range strings.Split(v, ",") {
			if n, err := strconv.Atoi(strings.TrimSpace(f)); err == nil && n > 0 {
				rates = append(rates, n)
			}
		}
	}
	for _, rate := range rates {
		b.Run(fmt.Sprintf("agents=%d/offered=%d", agents, rate), func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				runLoad(b, agents, rate, time.Duration(secs)*time.Second)
			}
		})
	}
}

// loadTarget is what a load run offers heartbeats to.
type loadTarget struct {
	addr     string
	ca       *testpki.CA
	answered func() int64 // heartbeats answered so far
	settled  func() bool  // no handshake left in progress
	report   func(b *testing.B, secs float64)
}

func serviceTarget(b *testing.B) *loadTarget {
	f := newFixture(b, Options{SessionIdle: time.Hour, MaxPendingHandshakes: 1024})
	var before *Stats
	return &loadTarget{
		addr: f.addr.String(), ca: f.ca,
		answered: func() int64 {
			st := f.svc.Stats()
			if before == nil {
				before = &st
			}
			return st.DTLSHeartbeats
		},
		settled: func() bool { return f.svc.Stats().PendingHandshakes == 0 },
		report: func(b *testing.B, secs float64) {
			after := f.svc.Stats()
			b.ReportMetric(float64(after.Shed-before.Shed)/secs, "shed/s")
			b.ReportMetric(float64(after.KernelDrops-before.KernelDrops)/secs, "kernel-drops/s")
			b.Logf("service: %+v", after)
		},
	}
}

// pionTarget is plain pion/dtls, for comparison: its listener (one UDP
// socket, connection-ID routing) with a goroutine per connection that
// reads heartbeats and answers them, as a backend built on pion's
// connections alone would.
func pionTarget(b *testing.B) *loadTarget {
	ca := testpki.NewCA(b, "vendor")
	cfg := tlsconf.DTLSServer(ca.Server(b), ca.Pool)
	ln, err := dtls.Listen("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)}, cfg) //nolint:staticcheck
	if err != nil {
		b.Fatal(err)
	}
	var answered, pending atomic.Int64
	var wg sync.WaitGroup
	b.Cleanup(func() { ln.Close(); wg.Wait() })
	var connsMu sync.Mutex
	var conns []net.Conn
	b.Cleanup(func() {
		connsMu.Lock()
		for _, c := range conns {
			c.Close()
		}
		connsMu.Unlock()
	})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			connsMu.Lock()
			conns = append(conns, c)
			connsMu.Unlock()
			pending.Add(1)
			wg.Add(1)
			go func() {
				defer wg.Done()
				dc := c.(*dtls.Conn)
				ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
				err := dc.HandshakeContext(ctx)
				cancel()
				pending.Add(-1)
				if err != nil {
					c.Close()
					return
				}
				st, _ := dc.ConnectionState()
				cert, _ := x509.ParseCertificate(st.PeerCertificates[0])
				id := cert.Subject.CommonName
				buf := make([]byte, 2048)
				for {
					n, err := c.Read(buf)
					if err != nil {
						return
					}
					h, err := hb.DecodeHeartbeat(buf[:n])
					if err != nil {
						continue
					}
					out, _ := hb.EncodeReply(&hb.Reply{Echo: hb.EchoFor(id, h.Seq, h.Nonce)})
					if _, err := c.Write(out); err == nil {
						answered.Add(1)
					}
				}
			}()
		}
	}()
	return &loadTarget{
		addr: ln.Addr().String(), ca: ca,
		answered: answered.Load,
		settled:  func() bool { return pending.Load() == 0 },
		report: func(b *testing.B, secs float64) {
			b.ReportMetric(float64(runtime.NumGoroutine()), "goroutines")
		},
	}
}

// BenchmarkPionConnectionsLoad runs the same load against plain pion
// connections, to show what the service's own record layer saves.
func BenchmarkPionConnectionsLoad(b *testing.B) {
	agents := envInt("HEARTBEAT_LOAD_AGENTS", 10000)
	secs := envInt("HEARTBEAT_LOAD_SECONDS", 10)
	b.Run(fmt.Sprintf("agents=%d/offered=30000", agents), func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			runLoadOn(b, pionTarget(b), agents, 30000, time.Duration(secs)*time.Second)
		}
	})
}

func runLoad(b *testing.B, agents, rate int, dur time.Duration) {
	runLoadOn(b, serviceTarget(b), agents, rate, dur)
}

func runLoadOn(b *testing.B, tg *loadTarget, agents, rate int, dur time.Duration) {
	b.Helper()
	base := liveBytes()
	keyDER, err := x509.MarshalECPrivateKey(tg.ca.Key)
	if err != nil {
		b.Fatal(err)
	}
	cfg := loadConfig{
		Server: tg.addr, CACertPEM: tg.ca.PEM,
		CAKeyPEM: pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}),
		Agents:   agents, Rate: rate, Duration: dur, Concurrency: 16,
	}
	cfgPath := filepath.Join(b.TempDir(), "load.json")
	raw, _ := json.Marshal(cfg)
	if err := os.WriteFile(cfgPath, raw, 0o600); err != nil {
		b.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "HEARTBEAT_LOADGEN="+cfgPath)
	cmd.Stderr = os.Stderr
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	defer func() {
		cmd.Process.Kill()
		cmd.Wait()
	}()
	out := bufio.NewReader(stdout)
	line, err := out.ReadString('\n')
	if err != nil {
		b.Fatalf("load generator: %v", err)
	}
	var ready loadReady
	if err := json.Unmarshal([]byte(line), &ready); err != nil {
		b.Fatalf("load generator said %q: %v", line, err)
	}
	waitFor(b, "handshakes settled", tg.settled)
	perAgent := float64(liveBytes()-base) / float64(ready.Handshakes)
	before := tg.answered()

	b.ResetTimer()
	fmt.Fprintln(stdin, "go")
	line, err = out.ReadString('\n')
	if err != nil {
		b.Fatalf("load generator: %v", err)
	}
	b.StopTimer()
	var res loadResult
	if err := json.Unmarshal([]byte(line), &res); err != nil {
		b.Fatalf("load generator said %q: %v", line, err)
	}
	b.ReportMetric(float64(tg.answered()-before)/res.Secs, "answered/s")
	b.ReportMetric(res.MaxRate, "offered/s")
	b.ReportMetric(float64(res.Answered)/float64(max(res.Sent, 1)), "answered-share")
	b.ReportMetric(res.P50us, "p50-µs")
	b.ReportMetric(res.P99us, "p99-µs")
	b.ReportMetric(perAgent, "B/agent")
	b.ReportMetric(float64(ready.Handshakes)/ready.HandshakeSecs, "handshakes/s")
	tg.report(b, res.Secs)
	b.Logf("%d devices connected (%d failed) in %.1fs", ready.Handshakes, ready.HandshakeFails, ready.HandshakeSecs)
}
