// Package realparts starts the real outside programs that dcagent's tests
// and demo talk to — swtpm for a TPM 2.0, SoftHSM for a PKCS#11 token —
// each with state of its own in a directory the caller owns, and stops
// them cleanly so that nothing is left running.
package realparts

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// SWTPMOptions shapes the software TPM that StartSWTPM makes.
type SWTPMOptions struct {
	// EKCert manufactures the TPM first with swtpm_setup: an RSA-2048
	// endorsement key at 0x81010001 and an ECC P-384 one at 0x81010016,
	// their certificates in NV (0x01c00002, 0x01c00016) and a platform
	// certificate, all signed by a local CA standing in for the TPM maker.
	// It takes about 0.6 s (1.5 s the first time a CA folder is used).
	EKCert bool
	// ManufacturerDir is the folder of that local CA. TPMs sharing one
	// folder come from the same "maker"; it is created on first use.
	// Empty means dir/manufacturer.
	ManufacturerDir string
	// Logger gets one line per start and stop; nil means discard.
	Logger *slog.Logger
}

// SWTPM is a running swtpm serving the raw TPM 2.0 command stream on a
// loopback TCP port, with its state in a directory. It serves one client
// connection at a time (a second one waits), like a TPM behind
// /dev/tpm0.
type SWTPM struct {
	dir     string
	stateDr string
	mfrDir  string
	addr    string
	log     *slog.Logger

	mu      sync.Mutex
	cmd     *exec.Cmd
	waitErr chan error
	stopped bool
}

// swtpmStartAttempts bounds the retries when the free port we picked is
// taken by someone else between our check and swtpm's bind.
const swtpmStartAttempts = 5

// StartSWTPM starts swtpm with its TPM state under dir (created if
// missing; a fresh directory gives a fresh TPM, an old one the TPM as it
// was stopped). It returns when the TPM answers on its port.
func StartSWTPM(ctx context.Context, dir string, opts SWTPMOptions) (*SWTPM, error) {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if _, err := exec.LookPath("swtpm"); err != nil {
		return nil, fmt.Errorf("realparts: swtpm is not installed (Debian packages swtpm and swtpm-tools; scripts/deps.sh installs them): %w", err)
	}
	s := &SWTPM{dir: dir, stateDr: filepath.Join(dir, "tpmstate"), log: log}
	if err := os.MkdirAll(s.stateDr, 0o700); err != nil {
		return nil, fmt.Errorf("realparts: swtpm state dir: %w", err)
	}
	if opts.EKCert {
		s.mfrDir = opts.ManufacturerDir
		if s.mfrDir == "" {
			s.mfrDir = filepath.Join(dir, "manufacturer")
		}
		if err := s.manufacture(ctx); err != nil {
			return nil, err
		}
	}
	var lastErr error
	for attempt := 0; attempt < swtpmStartAttempts; attempt++ {
		lastErr = s.start(ctx, 0)
		if lastErr == nil {
			log.Info("swtpm: started", "addr", s.addr, "dir", dir, "ek_cert", opts.EKCert)
			return s, nil
		}
		if ctx.Err() != nil {
			break
		}
	}
	return nil, lastErr
}

// manufacture runs swtpm_setup to create the endorsement keys and their
// certificates, with the local CA kept in s.mfrDir rather than the
// system-wide /var/lib/swtpm-localca.
func (s *SWTPM) manufacture(ctx context.Context) error {
	if err := os.MkdirAll(s.mfrDir, 0o700); err != nil {
		return fmt.Errorf("realparts: manufacturer CA dir: %w", err)
	}
	localCA := filepath.Join(s.dir, "swtpm-localca.conf")
	setup := filepath.Join(s.dir, "swtpm_setup.conf")
	lc := fmt.Sprintf("statedir = %[1]s\nsigningkey = %[1]s/signkey.pem\nissuercert = %[1]s/issuercert.pem\ncertserial = %[1]s/certserial\n", s.mfrDir)
	sc := fmt.Sprintf("create_certs_tool = /usr/bin/swtpm_localca\ncreate_certs_tool_config = %s\ncreate_certs_tool_options = /etc/swtpm-localca.options\nactive_pcr_banks = sha256\n", localCA)
	if err := os.WriteFile(localCA, []byte(lc), 0o600); err != nil {
		return fmt.Errorf("realparts: %w", err)
	}
	if err := os.WriteFile(setup, []byte(sc), 0o600); err != nil {
		return fmt.Errorf("realparts: %w", err)
	}
	cmd := exec.CommandContext(ctx, "swtpm_setup", "--tpm2", "--tpmstate", s.stateDr,
		"--create-ek-cert", "--create-platform-cert", "--config", setup, "--overwrite")
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("realparts: swtpm_setup failed: %w\n%s", err, lastLines(out, 10))
	}
	return nil
}

func (s *SWTPM) start(ctx context.Context, port int) error {
	if port == 0 {
		var err error
		if port, err = freeLoopbackPort(); err != nil {
			return err
		}
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	logPath := filepath.Join(s.dir, "swtpm.log")
	// No --daemon: we are the parent and Wait() for it, so it is never left
	// to PID 1. not-need-init,startup-clear make it ready without
	// TPM2_Startup from us.
	cmd := exec.Command("swtpm", "socket", "--tpm2",
		"--server", fmt.Sprintf("type=tcp,port=%d,bindaddr=127.0.0.1", port),
		"--tpmstate", "dir="+s.stateDr,
		"--flags", "not-need-init,startup-clear",
		"--log", "file="+logPath+",level=1")
	var stderr bytes.Buffer
	cmd.Stdout = &stderr
	cmd.Stderr = &stderr
	// If the program that started it dies without stopping it (a demo or
	// a test killed), the kernel ends swtpm too instead of orphaning it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("realparts: start swtpm: %w", err)
	}
	waitErr := make(chan error, 1)
	go func() { waitErr <- cmd.Wait() }()

	deadline := time.Now().Add(15 * time.Second)
	for {
		select {
		case err := <-waitErr:
			logText, _ := os.ReadFile(logPath)
			return fmt.Errorf("realparts: swtpm on %s exited at start: %v\n%s%s", addr, err, stderr.String(), lastLines(logText, 5))
		default:
		}
		// A TPM answer, not just an open port: someone else may have
		// taken the port we picked.
		derr := sendRaw(addr, tpm2GetRandom, time.Second)
		if derr == nil {
			break
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			_ = cmd.Process.Kill()
			<-waitErr
			return fmt.Errorf("realparts: swtpm did not answer on %s: %v", addr, derr)
		}
		time.Sleep(5 * time.Millisecond)
	}
	s.mu.Lock()
	s.cmd, s.waitErr, s.addr, s.stopped = cmd, waitErr, addr, false
	s.mu.Unlock()
	return nil
}

// Addr is the loopback host:port of the TPM command channel.
func (s *SWTPM) Addr() string { return s.addr }

// URI returns the tpm: key URI of the key named key in this TPM (see
// crypto/tpm for the syntax).
func (s *SWTPM) URI(key string) string {
	if key == "" {
		return "tpm://" + s.addr
	}
	return "tpm://" + s.addr + "?key=" + key
}

// Dir is the directory given to StartSWTPM.
func (s *SWTPM) Dir() string { return s.dir }

// ManufacturerRootsFile is a PEM file holding the local CA's root and its
// issuing certificate: what a backend trusts as the TPM maker's roots for
// endorsement-key certificates. Empty when the TPM has no EK certificate.
func (s *SWTPM) ManufacturerRootsFile() (string, error) {
	if s.mfrDir == "" {
		return "", errors.New("realparts: this swtpm was started without EKCert")
	}
	return ManufacturerRoots(s.mfrDir)
}

// ManufacturerRoots writes and returns mfrDir/roots.pem: the root and the
// issuing certificate of the swtpm local CA kept in mfrDir.
func ManufacturerRoots(mfrDir string) (string, error) {
	var all []byte
	for _, name := range []string{"swtpm-localca-rootca-cert.pem", "issuercert.pem"} {
		b, err := os.ReadFile(filepath.Join(mfrDir, name))
		if err != nil {
			return "", fmt.Errorf("realparts: TPM maker CA: %w", err)
		}
		all = append(all, b...)
		if len(b) > 0 && b[len(b)-1] != '\n' {
			all = append(all, '\n')
		}
	}
	p := filepath.Join(mfrDir, "roots.pem")
	if err := os.WriteFile(p, all, 0o644); err != nil {
		return "", fmt.Errorf("realparts: %w", err)
	}
	return p, nil
}

// tpm2ShutdownClear is TPM2_Shutdown(TPM_SU_CLEAR): tag NO_SESSIONS, size
// 12, command code 0x145, shutdownType 0.
var tpm2ShutdownClear = []byte{0x80, 0x01, 0, 0, 0, 12, 0, 0, 0x01, 0x45, 0, 0}

// tpm2GetRandom asks for one random byte: a harmless command that shows
// the port is served by a TPM.
var tpm2GetRandom = []byte{0x80, 0x01, 0, 0, 0, 12, 0, 0, 0x01, 0x7b, 0, 1}

// Stop shuts the TPM down in order and ends the process. TPM2_Shutdown
// goes first: a TPM that loses power without it after a DA-protected key
// was used counts a dictionary-attack failure, and three of those lock
// swtpm out for 1000 s. A client still connected makes the shutdown wait;
// after a few seconds Stop gives up on it and ends the process anyway.
// Stop is safe to call twice.
func (s *SWTPM) Stop() error {
	if shutErr := s.stop(); shutErr != nil {
		return fmt.Errorf("realparts: swtpm %s stopped without TPM2_Shutdown: %w", s.addr, shutErr)
	}
	return nil
}

// stop ends the process and returns why TPM2_Shutdown could not be sent,
// if it could not.
func (s *SWTPM) stop() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopped || s.cmd == nil {
		return nil
	}
	s.stopped = true
	shutErr := sendRaw(s.addr, tpm2ShutdownClear, 3*time.Second)
	if shutErr != nil {
		s.log.Warn("swtpm: no orderly shutdown", "addr", s.addr, "err", shutErr)
	}
	_ = s.cmd.Process.Signal(os.Interrupt)
	select {
	case <-s.waitErr:
	case <-time.After(5 * time.Second):
		_ = s.cmd.Process.Kill()
		<-s.waitErr
	}
	s.log.Info("swtpm: stopped", "addr", s.addr)
	return shutErr
}

// Restart stops the TPM and starts it again on the same state and, when
// it is still free, the same port: a power cycle of the machine. Clients
// see their connection break. With a client connected, TPM2_Shutdown
// cannot get through (one client at a time), so after 3 s this is a
// power loss instead, which dcagent's noDA keys do not mind.
func (s *SWTPM) Restart(ctx context.Context) error {
	_ = s.stop()
	_, portStr, _ := net.SplitHostPort(s.addr)
	port, _ := strconv.Atoi(portStr)
	var err error
	for attempt := 0; attempt < swtpmStartAttempts; attempt++ {
		if err = s.start(ctx, port); err == nil {
			return nil
		}
		port = 0 // taken meanwhile: any free port
	}
	return err
}

// sendRaw sends one TPM command on a fresh connection and checks that the
// response code is success.
func sendRaw(addr string, cmd []byte, timeout time.Duration) error {
	c, err := net.DialTimeout("tcp", addr, timeout)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(timeout))
	if _, err := c.Write(cmd); err != nil {
		return err
	}
	hdr := make([]byte, 10)
	if _, err := io.ReadFull(c, hdr); err != nil {
		return fmt.Errorf("reading the response (is another client connected?): %w", err)
	}
	if rc := binary.BigEndian.Uint32(hdr[6:]); rc != 0 {
		return fmt.Errorf("TPM response code 0x%x", rc)
	}
	return nil
}

// SWTPMForTest starts a fresh swtpm for a test, with its state in a
// temporary directory, and stops it (in order) when the test ends.
// Cleanups run last-in first-out, so a key store opened after this call is
// closed before the TPM is stopped.
func SWTPMForTest(t testing.TB) *SWTPM {
	t.Helper()
	return swtpmForTest(t, SWTPMOptions{})
}

// SWTPMWithEKForTest starts a fresh swtpm manufactured with endorsement
// keys and certificates from the local CA in mfrDir (share one mfrDir
// between TPMs that should come from the same maker; "" gives this TPM a
// maker of its own).
func SWTPMWithEKForTest(t testing.TB, mfrDir string) *SWTPM {
	t.Helper()
	return swtpmForTest(t, SWTPMOptions{EKCert: true, ManufacturerDir: mfrDir})
}

func swtpmForTest(t testing.TB, opts SWTPMOptions) *SWTPM {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	s, err := StartSWTPM(ctx, t.TempDir(), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Stop(); err != nil {
			t.Errorf("swtpm: %v", err)
		}
	})
	return s
}

func freeLoopbackPort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("realparts: no free loopback port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func lastLines(b []byte, n int) string {
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
