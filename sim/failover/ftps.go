package failover

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// ProFTPDBinary is the FTPS server the simulator runs (Debian packages
// proftpd-core and proftpd-mod-crypto, which holds mod_tls).
var ProFTPDBinary = "proftpd"

// FTPSServer is ProFTPD on a loopback port, explicit TLS required for
// login and data, one virtual user whose home is the drop folder.
type FTPSServer struct {
	cmd  *exec.Cmd
	addr string
	dir  string // working files: config, logs, pid
	drop string // where uploads land
	done chan error
}

// StartFTPS writes a ProFTPD configuration under workDir and starts it in
// the foreground. It needs root (ProFTPD binds and then drops to nobody),
// which CI has. The server is ready when StartFTPS returns.
func StartFTPS(workDir string, cert tls.Certificate, user, password string) (*FTPSServer, error) {
	if _, err := exec.LookPath(ProFTPDBinary); err != nil {
		return nil, fmt.Errorf("failover: %s not found: install the Debian packages proftpd-core and proftpd-mod-crypto (scripts/deps.sh does)", ProFTPDBinary)
	}
	// ProFTPD serves as nobody, who must reach the drop folder: it cannot
	// live under a test's private temporary directory, so it gets its own
	// folder in the system temporary directory, removed by Close.
	drop, err := os.MkdirTemp("", "dcsim-ftps-drop-")
	if err != nil {
		return nil, err
	}
	s := &FTPSServer{dir: workDir, drop: drop, done: make(chan error, 1)}
	// ProFTPD serves as nobody: the drop folder must be theirs.
	const nobody, nogroup = 65534, 65534
	if err := os.Chown(s.drop, nobody, nogroup); err != nil {
		os.RemoveAll(drop)
		return nil, fmt.Errorf("failover: chown drop folder (needs root): %w", err)
	}
	certPEM, keyPEM, err := pemPair(cert)
	if err != nil {
		return nil, err
	}
	certFile, keyFile := filepath.Join(workDir, "ftps-cert.pem"), filepath.Join(workDir, "ftps-key.pem")
	if err := os.WriteFile(certFile, certPEM, 0o644); err != nil {
		return nil, err
	}
	if err := os.WriteFile(keyFile, keyPEM, 0o600); err != nil {
		return nil, err
	}
	hash, err := cryptPassword(password)
	if err != nil {
		return nil, err
	}
	passwd := fmt.Sprintf("%s:%s:%d:%d::%s:/bin/false\n", user, hash, nobody, nogroup, s.drop)
	if err := os.WriteFile(filepath.Join(workDir, "passwd"), []byte(passwd), 0o600); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(workDir, "group"), []byte(fmt.Sprintf("nogroup:x:%d:\n", nogroup)), 0o600); err != nil {
		return nil, err
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	s.addr = fmt.Sprintf("127.0.0.1:%d", port)
	conf := fmt.Sprintf(`# written by sim/failover for one test run
ServerName "dcsim ftps"
ServerType standalone
Port %d
DefaultAddress 127.0.0.1
SocketBindTight on
UseIPv6 off
User nobody
Group nogroup
PidFile %[2]s/proftpd.pid
ScoreboardFile %[2]s/proftpd.scoreboard
DelayTable none
WtmpLog off
UseReverseDNS off
SystemLog %[2]s/proftpd.log
TransferLog %[2]s/xfer.log
AuthOrder mod_auth_file.c
AuthUserFile %[2]s/passwd
AuthGroupFile %[2]s/group
RequireValidShell off
DefaultRoot ~
AllowOverwrite on
MaxInstances 20
ModulePath /usr/lib/proftpd
<IfModule mod_dso.c>
  LoadModule mod_tls.c
</IfModule>
TLSEngine on
TLSRequired on
TLSProtocol TLSv1.2 TLSv1.3
TLSECCertificateFile %[3]s
TLSECCertificateKeyFile %[4]s
TLSVerifyClient off
TLSOptions NoSessionReuseRequired
TLSLog %[2]s/tls.log
`, port, workDir, certFile, keyFile)
	confFile := filepath.Join(workDir, "proftpd.conf")
	if err := os.WriteFile(confFile, []byte(conf), 0o600); err != nil {
		return nil, err
	}
	if out, err := exec.Command(ProFTPDBinary, "-t", "-c", confFile).CombinedOutput(); err != nil {
		log, _ := os.ReadFile(filepath.Join(workDir, "proftpd.log"))
		return nil, fmt.Errorf("failover: proftpd rejects its configuration %s: %v\n%s%s", confFile, err, out, log)
	}
	cmd := exec.Command(ProFTPDBinary, "-n", "-q", "-c", confFile)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("failover: start proftpd: %w", err)
	}
	s.cmd = cmd
	go func() { s.done <- cmd.Wait() }()
	if err := s.waitReady(15 * time.Second); err != nil {
		s.Close()
		log, _ := os.ReadFile(filepath.Join(workDir, "proftpd.log"))
		return nil, fmt.Errorf("failover: proftpd not ready: %w\n%s\n%s", err, stderr.String(), log)
	}
	return s, nil
}

func (s *FTPSServer) waitReady(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		select {
		case err := <-s.done:
			s.done <- err
			return fmt.Errorf("exited: %v", err)
		default:
		}
		c, err := net.DialTimeout("tcp", s.addr, time.Second)
		if err == nil {
			_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
			buf := make([]byte, 64)
			n, _ := c.Read(buf)
			c.Close()
			if strings.HasPrefix(string(buf[:n]), "220") {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return errors.New("no greeting on " + s.addr)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Addr is the control connection's host:port.
func (s *FTPSServer) Addr() string { return s.addr }

// DropDir is where uploaded files land.
func (s *FTPSServer) DropDir() string { return s.drop }

// Close stops ProFTPD and waits for it.
func (s *FTPSServer) Close() error {
	defer os.RemoveAll(s.drop)
	if s.cmd == nil || s.cmd.Process == nil {
		return nil
	}
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.done:
	case <-time.After(10 * time.Second):
		_ = s.cmd.Process.Kill()
		<-s.done
	}
	return nil
}

// Ingest is what a collected file is handed to.
type Ingest func(name string, data []byte) error

// Collect hands every finished upload in the drop folder to ingest (files
// still being written end in .part and are left alone) and removes the
// ones it took. It returns how many it handed over.
func (s *FTPSServer) Collect(ingest Ingest) (int, error) {
	entries, err := os.ReadDir(s.drop)
	if err != nil {
		return 0, err
	}
	n := 0
	var errs []error
	for _, e := range entries {
		if e.IsDir() || strings.HasSuffix(e.Name(), ".part") {
			continue
		}
		p := filepath.Join(s.drop, e.Name())
		data, err := os.ReadFile(p)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if err := ingest(e.Name(), data); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", e.Name(), err))
			continue
		}
		_ = os.Remove(p)
		n++
	}
	return n, errors.Join(errs...)
}

// CollectLoop runs Collect every interval until ctx ends.
func (s *FTPSServer) CollectLoop(ctx context.Context, interval time.Duration, ingest Ingest) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			_, _ = s.Collect(ingest)
		}
	}
}

func pemPair(cert tls.Certificate) ([]byte, []byte, error) {
	var certPEM []byte
	for _, der := range cert.Certificate {
		certPEM = append(certPEM, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})...)
	}
	k, ok := cert.PrivateKey.(*ecdsa.PrivateKey)
	if !ok {
		return nil, nil, fmt.Errorf("failover: FTPS server key must be ECDSA, got %T", cert.PrivateKey)
	}
	der, err := x509.MarshalECPrivateKey(k)
	if err != nil {
		return nil, nil, err
	}
	return certPEM, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der}), nil
}

// cryptPassword makes a SHA-512 crypt(3) hash with openssl, which
// ProFTPD's AuthUserFile understands.
func cryptPassword(pw string) (string, error) {
	cmd := exec.Command("openssl", "passwd", "-6", "-stdin")
	cmd.Stdin = strings.NewReader(pw + "\n")
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("failover: openssl passwd: %w", err)
	}
	return strings.TrimSpace(string(out)), nil
}

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}
