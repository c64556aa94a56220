// Package demo runs the whole job on one machine (`make demo`, `dcsim
// demo`): a software TPM, the reference backend, simulated hardware fed by
// real captured SMART data with one drive degrading, and the real dcagent
// binary enrolled with the TPM and running as a daemon. It narrates what
// happens in words a newcomer can follow: heartbeats, the drive's risk
// rising, the alert travelling home, a case with a part to dispatch, a
// remote session requested, approved by a local person, used and closed,
// and the audit log verifying. It cleans up after itself.
//
// The lab it builds is also what the footprint measurement and the
// daemon's end-to-end tests use (Lab).
package demo

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/dcagent/dcagent/agent/policy"
	halsim "github.com/dcagent/dcagent/hal/sim"
	"github.com/dcagent/dcagent/internal/realparts"
	"github.com/dcagent/dcagent/sim/backend"
	"github.com/dcagent/dcagent/sim/cases"
)

// LabOptions shape a lab.
type LabOptions struct {
	// Agent is the dcagent binary to run.
	Agent string
	// Simulator is the dcsim binary the smartctl stand-in runs; "" means
	// this program (right when the lab runs inside dcsim).
	Simulator string
	// Captures is a folder of smartctl JSON captures ("" finds
	// ../shared/testdata; "none" makes drives up).
	Captures string
	// Drives in the enclosure; 0 means 4.
	Drives int
	// Tick is the real time between hardware simulation steps; 0 means 2 s.
	Tick time.Duration
	// Heartbeat is the agent's heartbeat interval; 0 means 2 s.
	Heartbeat time.Duration
	// DriveInterval is how often the agent reads its drives; 0 means 2 s.
	DriveInterval time.Duration
	// SensorInterval is how often the agent reads its sensors; 0 means 2 s.
	SensorInterval time.Duration
	// Degrade names the drive that degrades ("" for none).
	Degrade string
	// Keep leaves the lab's folder in place.
	Keep bool
	// StateTmpfs, when not zero, mounts a tmpfs of that many bytes as the
	// agent's state directory (tests of a full disk; needs root).
	StateTmpfs int64
	// Logger gets the backend's and the TPM's lines; nil discards.
	Logger *slog.Logger
}

// Lab is a running swtpm, backend, simulated hardware and a configured
// (not yet started) agent.
type Lab struct {
	Dir      string
	Config   string
	SystemID string
	Backend  *backend.Backend
	TPM      *realparts.SWTPM
	Hardware *halsim.Hardware
	Console  string // the local "web console" the remote session reaches

	opts      LabOptions
	mounted   string
	console   *http.Server
	agent     *exec.Cmd
	agentLog  *os.File
	agentDone chan error
	stopHW    context.CancelFunc
	hwDone    chan struct{}
}

// NewLab builds a lab in a new temporary folder.
func NewLab(ctx context.Context, o LabOptions) (_ *Lab, err error) {
	if o.Drives == 0 {
		o.Drives = 4
	}
	if o.Tick == 0 {
		o.Tick = 2 * time.Second
	}
	if o.Heartbeat == 0 {
		o.Heartbeat = 2 * time.Second
	}
	if o.DriveInterval == 0 {
		o.DriveInterval = 2 * time.Second
	}
	if o.SensorInterval == 0 {
		o.SensorInterval = 2 * time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	dir, err := os.MkdirTemp("", "dcagent-lab-")
	if err != nil {
		return nil, err
	}
	l := &Lab{Dir: dir, SystemID: "SYS-DEMO-0001", opts: o}
	defer func() {
		if err != nil {
			l.Close()
		}
	}()

	l.TPM, err = realparts.StartSWTPM(ctx, filepath.Join(dir, "tpm"), realparts.SWTPMOptions{EKCert: true, Logger: o.Logger})
	if err != nil {
		return nil, fmt.Errorf("software TPM: %w (is swtpm installed? make demo installs it)", err)
	}
	roots, err := l.TPM.ManufacturerRootsFile()
	if err != nil {
		return nil, err
	}
	l.Backend, err = backend.Start(backend.Options{Dir: filepath.Join(dir, "backend"), RequireTPM: true, TPMRootsFile: roots, Logger: o.Logger})
	if err != nil {
		return nil, err
	}
	hwOpts := halsim.Options{Root: filepath.Join(dir, "hardware"), Captures: o.Captures, Drives: o.Drives, Degrade: o.Degrade, StepDuration: time.Hour, Logger: o.Logger}
	if o.Simulator != "" {
		hwOpts.SmartctlCommand = []string{o.Simulator, "hardware", "smartctl"}
	}
	l.Hardware, err = halsim.Create(hwOpts)
	if err != nil {
		return nil, err
	}
	if err := l.startConsole(); err != nil {
		return nil, err
	}
	if o.StateTmpfs > 0 {
		state := filepath.Join(dir, "state")
		if err := os.MkdirAll(state, 0o700); err != nil {
			return nil, err
		}
		if err := syscall.Mount("tmpfs", state, "tmpfs", 0, fmt.Sprintf("size=%d,mode=0700", o.StateTmpfs)); err != nil {
			return nil, fmt.Errorf("mounting a tmpfs for the state directory: %w", err)
		}
		l.mounted = state
	}
	if err := l.writeConfig(); err != nil {
		return nil, err
	}
	return l, nil
}

// startConsole serves the device's local "web console": what a remote
// session reaches, on loopback only.
func (l *Lab) startConsole() error {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	l.Console = ln.Addr().String()
	l.console = &http.Server{ReadHeaderTimeout: 5 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "device %s web console: controller healthy, 1 drive flagged for replacement\n", l.SystemID)
	})}
	go l.console.Serve(ln)
	return nil
}

func (l *Lab) writeConfig() error {
	approver := "root"
	if u, err := user.Current(); err == nil {
		approver = u.Username
	}
	// The vendor's signing key for scripts and files: the lab's own, so the
	// agent reads nothing from the host's /etc.
	vendorKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	der, err := x509.MarshalPKIXPublicKey(&vendorKey.PublicKey)
	if err != nil {
		return err
	}
	vendorKeyFile := filepath.Join(l.Dir, "vendor-signing.pem")
	if err := os.WriteFile(vendorKeyFile, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), 0o644); err != nil {
		return err
	}
	policyFile := filepath.Join(l.Dir, "policy.txt")
	if err := os.WriteFile(policyFile, []byte("dcagent-policy 1\nversion 1\n# a person on site approves every remote session\nall remote:* ask\nall config deny\n"), 0o600); err != nil {
		return err
	}
	l.Config = filepath.Join(l.Dir, "dcagent.conf")
	conf := fmt.Sprintf(`# written by the demo lab
[device]
system_id = %s
type = server
model = DEMO-R1
serial = DEMO-SN-1
labels = location=lab
state_dir = %s

[backend]
url = %s
heartbeat_addr = %s
ca_file = %s

[identity]
key_uri = %s

[hal]
sysfs_root = %s
smartctl = %s
sensor_interval = %s
drive_interval = %s

[heartbeat]
interval = %s
udp_tries = 3

[policy]
file = %s
approvers = %s
ask_timeout = 60s

[remote]
services = console=%s
relay_hosts = 127.0.0.1
idle_timeout = 10s
vendor_key_file = %s
`, l.SystemID, filepath.Join(l.Dir, "state"), l.Backend.URL(), l.Backend.HeartbeatAddr(), l.Backend.CAFile(),
		l.TPM.URI("device"), l.Hardware.SysfsRoot(), l.Hardware.SmartctlPath(), l.opts.SensorInterval, l.opts.DriveInterval, l.opts.Heartbeat,
		policyFile, approver, l.Console, vendorKeyFile)
	return os.WriteFile(l.Config, []byte(conf), 0o600)
}

// Agent runs dcagent with the lab's configuration and returns its output.
func (l *Lab) Agent(ctx context.Context, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, l.opts.Agent, append([]string{"--config", l.Config}, args...)...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// Enroll makes the device key in the TPM and enrolls it with a fresh token.
func (l *Lab) Enroll(ctx context.Context) (string, error) {
	token, err := l.Backend.CA.NewToken(l.SystemID, 10*time.Minute)
	if err != nil {
		return "", err
	}
	cmd := exec.CommandContext(ctx, l.opts.Agent, "--config", l.Config, "enroll", "--token", "-")
	cmd.Stdin = strings.NewReader(token + "\n")
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("dcagent enroll: %v", err)
	}
	return string(out), nil
}

// StartAgent starts `dcagent run`; its log goes to Dir/agent.log.
func (l *Lab) StartAgent() error {
	f, err := os.OpenFile(filepath.Join(l.Dir, "agent.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	l.agentLog = f
	l.agent = exec.Command(l.opts.Agent, "--config", l.Config, "run")
	l.agent.Stdout, l.agent.Stderr = f, f
	// Killed with the lab's own process, never left running alone.
	l.agent.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := l.agent.Start(); err != nil {
		return err
	}
	l.agentDone = make(chan error, 1)
	go func() { l.agentDone <- l.agent.Wait() }()
	return nil
}

// AgentPID is the running agent's process id (0 when not running).
func (l *Lab) AgentPID() int {
	if l.agent == nil || l.agent.Process == nil {
		return 0
	}
	return l.agent.Process.Pid
}

// StopAgent sends SIGTERM and waits (up to 15 s) for the agent to exit.
func (l *Lab) StopAgent() error {
	if l.agent == nil {
		return nil
	}
	l.agent.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-l.agentDone:
		l.agent = nil
		return err
	case <-time.After(15 * time.Second):
		l.agent.Process.Kill()
		<-l.agentDone
		l.agent = nil
		return errors.New("the agent did not stop within 15 s of SIGTERM")
	}
}

// AgentLog returns the agent's log so far.
func (l *Lab) AgentLog() string {
	b, _ := os.ReadFile(filepath.Join(l.Dir, "agent.log"))
	return string(b)
}

// RunHardware advances the simulated hardware one step per tick until
// Close; onChange gets every change.
func (l *Lab) RunHardware(onChange func(step int, changes []halsim.Change)) {
	ctx, cancel := context.WithCancel(context.Background())
	l.stopHW = cancel
	l.hwDone = make(chan struct{})
	go func() {
		defer close(l.hwDone)
		l.Hardware.Run(ctx, l.opts.Tick, 0, onChange)
	}()
}

// Pending lists the requests waiting for a local person, through the
// agent's own command.
func (l *Lab) Pending(ctx context.Context) ([]policy.Pending, error) {
	out, err := l.Agent(ctx, "pending", "--json")
	if err != nil {
		return nil, fmt.Errorf("dcagent pending: %v: %s", err, out)
	}
	var p []policy.Pending
	if err := json.Unmarshal([]byte(out), &p); err != nil {
		return nil, fmt.Errorf("dcagent pending: %v: %s", err, out)
	}
	return p, nil
}

// Close stops everything and removes the lab (unless Keep).
func (l *Lab) Close() {
	if l.agent != nil {
		l.StopAgent()
	}
	if l.agentLog != nil {
		l.agentLog.Close()
	}
	if l.stopHW != nil {
		l.stopHW()
		<-l.hwDone
	}
	if l.console != nil {
		l.console.Close()
	}
	if l.Backend != nil {
		l.Backend.Close()
	}
	if l.TPM != nil {
		l.TPM.Stop()
	}
	if l.mounted != "" {
		syscall.Unmount(l.mounted, syscall.MNT_DETACH)
	}
	if !l.opts.Keep {
		os.RemoveAll(l.Dir)
	}
}

// caseLine describes a case for the narration.
func caseLine(c cases.Case) string {
	return fmt.Sprintf("%s: %s. Part to dispatch: %s", c.ID, c.Summary, c.Part.Description)
}

func indent(s, prefix string) string {
	var b bytes.Buffer
	for _, line := range strings.Split(strings.TrimRight(s, "\n"), "\n") {
		b.WriteString(prefix + line + "\n")
	}
	return b.String()
}

// StopBackend stops the backend, keeping its state and its addresses for
// RestartBackend: the device sees its vendor go away.
func (l *Lab) StopBackend() {
	l.Backend.Close()
}

// RestartBackend starts the backend again on the same addresses and state.
func (l *Lab) RestartBackend() error {
	roots, err := l.TPM.ManufacturerRootsFile()
	if err != nil {
		return err
	}
	info := struct{ https, udp, relay string }{l.Backend.URL()[len("https://"):], l.Backend.HeartbeatAddr(), l.Backend.Relay.Addr()}
	b, err := backend.Start(backend.Options{Dir: l.Backend.Dir(), HTTPSAddr: info.https, UDPAddr: info.udp, RelayAddr: info.relay,
		RequireTPM: true, TPMRootsFile: roots, Logger: l.opts.Logger})
	if err != nil {
		return err
	}
	l.Backend = b
	return nil
}

// WaitHeartbeats waits until the backend has answered n more heartbeats
// from the lab's device.
func (l *Lab) WaitHeartbeats(ctx context.Context, n int) error {
	ch, stop := l.Backend.Heartbeat.Subscribe(64)
	defer stop()
	for seen := 0; seen < n; {
		select {
		case <-ctx.Done():
			return fmt.Errorf("waited for %d heartbeats, saw %d: %w", n, seen, ctx.Err())
		case s := <-ch:
			if s.SystemID == l.SystemID {
				seen++
			}
		}
	}
	return nil
}
