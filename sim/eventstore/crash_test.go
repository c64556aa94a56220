package eventstore

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/dcagent/dcagent/agent/event"
	"github.com/dcagent/dcagent/internal/testenv"
	"github.com/dcagent/dcagent/sim/eventstore/internal/crashgen"
	"github.com/dcagent/dcagent/sim/faultproxy"
)

// TestCrashKill is the promise of connect-home under test: a real agent
// process putting and uploading 10,000 events is killed with SIGKILL at
// random moments, at least 50 times, while the fault proxy between it and
// the backend drops, delays, stalls and resets connections. In the end the
// backend holds every event exactly once, byte for byte, and the spool is
// empty. The seed is logged; DCAGENT_CRASH_SEED repeats a run.
func TestCrashKill(t *testing.T) {
	const (
		count    = 10000
		minKills = 50
	)
	seed := time.Now().UnixNano() % 1_000_000
	if s := os.Getenv("DCAGENT_CRASH_SEED"); s != "" {
		var err error
		if seed, err = strconv.ParseInt(s, 10, 64); err != nil {
			t.Fatalf("DCAGENT_CRASH_SEED=%q: %v", s, err)
		}
	}
	t.Logf("crash test seed %d (repeat with DCAGENT_CRASH_SEED=%d)", seed, seed)
	rng := rand.New(rand.NewSource(seed))

	work := t.TempDir()
	bin := filepath.Join(work, "crashagent")
	build := exec.Command("go", "build", "-o", bin, "./sim/eventstore/internal/crashagent")
	build.Dir = testenv.RepoRoot(t)
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build crash agent: %v\n%s", err, out)
	}

	b := startBackend(t, filepath.Join(work, "backend"))
	proxy, err := faultproxy.NewTCP("127.0.0.1:0", b.addr())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { proxy.Close() })
	faults := faultproxy.Fault{Mode: faultproxy.Random, Seed: seed, Mix: faultproxy.Mix{
		Pass: 5, Delay: 2, Drop: 1, Reset: 3,
		MaxDelay: 20 * time.Millisecond, MaxStall: 400 * time.Millisecond, ResetAfterBytes: 32 << 10,
	}}
	proxy.SetFault(faults)

	// The device's identity as files, the way the child reads it.
	caFile := b.ca.WriteCAFile(t, work)
	dev := b.ca.Device(t, crashgen.SystemID)
	certFile, keyFile := filepath.Join(work, "device.pem"), filepath.Join(work, "device.key")
	keyDER, err := x509.MarshalECPrivateKey(dev.PrivateKey.(*ecdsa.PrivateKey))
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: dev.Certificate[0]}), 0o600)
	os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), 0o600)

	spoolDir := filepath.Join(work, "agent", "spool")
	os.MkdirAll(filepath.Dir(spoolDir), 0o700)
	start := func(exitWhenDone bool) *exec.Cmd {
		args := []string{"-spool", spoolDir, "-backend", proxy.Addr().String(), "-ca", caFile,
			"-cert", certFile, "-key", keyFile, "-seed", strconv.FormatInt(seed, 10), "-count", strconv.Itoa(count), "-rate", "400"}
		if exitWhenDone {
			args = append(args, "-exit-when-done")
		}
		cmd := exec.Command(bin, args...)
		cmd.Stderr = &limitedLog{t: t}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		return cmd
	}

	kills := 0
	deadline := time.Now().Add(150 * time.Second)
	for kills < minKills || progress(work) < count {
		if time.Now().After(deadline) {
			t.Fatalf("after %d kills only %d of %d events were made", kills, progress(work), count)
		}
		// Now and then change the network as a whole, not only per
		// connection: a black hole, a reset of everything, or back to the
		// random mix.
		switch rng.Intn(8) {
		case 0:
			proxy.SetMode(faultproxy.Blackhole)
		case 1:
			proxy.SetMode(faultproxy.Reset)
		default:
			proxy.SetFault(faults)
		}
		cmd := start(false)
		time.Sleep(time.Duration(20+rng.Intn(780)) * time.Millisecond)
		if err := cmd.Process.Signal(syscall.SIGKILL); err == nil {
			kills++
		}
		err := cmd.Wait()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
			t.Fatalf("crash agent ended by itself before the kill: %v", err)
		}
	}
	t.Logf("%d kills; proxy %+v", kills, proxy.Stats())
	if st := proxy.Stats(); st.Resets == 0 || st.Stalls == 0 || st.Delayed == 0 {
		t.Fatalf("the proxy did not inject every fault: %+v", st)
	}

	// Let the network heal and the agent finish by itself.
	proxy.SetMode(faultproxy.Pass)
	last := start(true)
	done := make(chan error, 1)
	go func() { done <- last.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("final agent run: %v", err)
		}
	case <-time.After(90 * time.Second):
		last.Process.Kill()
		<-done
		t.Fatalf("the final run did not drain the spool; backend holds %d", b.store.Count())
	}

	// Every event exactly once, byte for byte.
	stored := b.store.Events()
	if len(stored) != count {
		t.Fatalf("backend holds %d events, want %d", len(stored), count)
	}
	byID := map[string]Received{}
	for _, r := range stored {
		if _, dup := byID[r.ID]; dup {
			t.Fatalf("event %s stored twice", r.ID)
		}
		byID[r.ID] = r
	}
	for i := 0; i < count; i++ {
		want, err := event.Marshal(crashgen.Event(seed, i))
		if err != nil {
			t.Fatal(err)
		}
		e := crashgen.Event(seed, i)
		got, ok := byID[e.ID]
		if !ok {
			t.Fatalf("event %d (%s) never reached the backend", i, e.ID)
		}
		if !bytes.Equal(got.Data, want) {
			t.Fatalf("event %d (%s) differs from what the agent made", i, e.ID)
		}
	}
	left, _ := filepath.Glob(filepath.Join(spoolDir, "*.spl"))
	tmps, _ := filepath.Glob(filepath.Join(spoolDir, ".tmp-*"))
	if len(left)+len(tmps) != 0 {
		t.Fatalf("spool not empty: %d files, %d temp files", len(left), len(tmps))
	}
	quarantined, _ := filepath.Glob(filepath.Join(spoolDir, "quarantine", "*.reason"))
	t.Logf("backend holds all %d events exactly once; spool empty; %d torn commits quarantined", count, len(quarantined))
}

func progress(work string) int {
	b, err := os.ReadFile(filepath.Join(work, "agent", "progress"))
	if err != nil {
		return 0
	}
	n, _ := strconv.Atoi(string(bytes.TrimSpace(b)))
	return n
}

// limitedLog passes a child's stderr to the test log, bounded.
type limitedLog struct {
	t *testing.T
	n int
}

func (l *limitedLog) Write(p []byte) (int, error) {
	if l.n < 20 {
		l.n++
		l.t.Logf("crashagent: %s", bytes.TrimSpace(p))
	}
	return len(p), nil
}
