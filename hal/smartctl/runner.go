package smartctl

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os/exec"
	"strings"
	"time"

	"github.com/dcagent/dcagent/hal"
)

// DriveSpec names a drive for smartctl: a device and, optionally, the
// -d type to reach it ("sat", "scsi", "nvme", "megaraid,14", "sat+megaraid,0").
type DriveSpec struct {
	Device string
	Type   string
}

// String gives the configuration form, device[:type].
func (d DriveSpec) String() string {
	if d.Type == "" {
		return d.Device
	}
	return d.Device + ":" + d.Type
}

// ParseDriveSpec reads a configuration entry "device[:type]", for example
// "/dev/sda", "/dev/sda:sat" or "/dev/bus/0:megaraid,14". The type follows
// the last colon; smartctl's -d types never contain one, nor a slash, so a
// device name with a colon (macOS "IOService:/...") stays whole.
func ParseDriveSpec(s string) (DriveSpec, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return DriveSpec{}, errors.New("smartctl: empty drive entry; want device[:type], e.g. /dev/sda:sat")
	}
	d := DriveSpec{Device: s}
	if i := strings.LastIndexByte(s, ':'); i >= 0 && !strings.Contains(s[i+1:], "/") {
		d.Device, d.Type = s[:i], s[i+1:]
	}
	switch {
	case d.Device == "":
		return DriveSpec{}, fmt.Errorf("smartctl: drive entry %q has no device before the colon; want device[:type]", s)
	case strings.HasPrefix(d.Device, "-"):
		return DriveSpec{}, fmt.Errorf("smartctl: drive entry %q: a device cannot start with '-'", s)
	case strings.ContainsAny(d.Type, " \t") || strings.HasPrefix(d.Type, "-"):
		return DriveSpec{}, fmt.Errorf("smartctl: drive entry %q: %q is not a smartctl -d type", s, d.Type)
	case strings.HasSuffix(s, ":"):
		return DriveSpec{}, fmt.Errorf("smartctl: drive entry %q has an empty type after the colon; leave the colon out to let smartctl choose", s)
	}
	return d, nil
}

// ParseDriveSpecs reads every entry of a configuration list, naming the
// first that is wrong.
func ParseDriveSpecs(entries []string) ([]DriveSpec, error) {
	out := make([]DriveSpec, 0, len(entries))
	for _, e := range entries {
		d, err := ParseDriveSpec(e)
		if err != nil {
			return nil, err
		}
		out = append(out, d)
	}
	return out, nil
}

// DefaultTimeout is how long one smartctl run may take when Runner.Timeout
// is zero. A drive in error recovery can hold a command for tens of seconds.
const DefaultTimeout = 60 * time.Second

// maxOutput bounds what is kept of smartctl's output.
const maxOutput = MaxInputBytes

// Runner runs smartctl and parses what it prints.
type Runner struct {
	// Program is the smartctl program, a path or a name looked up in
	// PATH; "" means "smartctl".
	Program string
	// Timeout bounds each run; 0 means DefaultTimeout. The caller's
	// context can end a run sooner.
	Timeout time.Duration
	// Logger gets one debug line per run; nil discards.
	Logger *slog.Logger
}

func (r *Runner) program() string {
	if r.Program == "" {
		return "smartctl"
	}
	return r.Program
}

func (r *Runner) logger() *slog.Logger {
	if r.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return r.Logger
}

// runResult is one smartctl run.
type runResult struct {
	stdout, stderr []byte
	exit           ExitStatus
}

// run executes smartctl with args. It returns an error only when smartctl
// could not be run or did not finish in time; a non-zero exit status is a
// result, not an error.
func (r *Runner) run(ctx context.Context, what string, args ...string) (runResult, error) {
	timeout := r.Timeout
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()

	cmd := exec.CommandContext(ctx, r.program(), args...)
	var stdout, stderr limitedBuffer
	stdout.limit, stderr.limit = maxOutput, 64<<10
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	configureKill(cmd)
	// Children that keep the output pipes open (a shell wrapper's sleep)
	// must not hold Wait past the kill.
	cmd.WaitDelay = 2 * time.Second

	began := time.Now()
	err := cmd.Run()
	elapsed := time.Since(began)
	res := runResult{stdout: stdout.Bytes(), stderr: stderr.Bytes()}
	log := r.logger().With("program", r.program(), "drive", what, "args", strings.Join(args, " "), "elapsed", elapsed.Round(time.Millisecond))

	if ctxErr := ctx.Err(); ctxErr != nil {
		log.Debug("smartctl did not finish", "err", ctxErr)
		if errors.Is(ctxErr, context.DeadlineExceeded) {
			return res, fmt.Errorf("smartctl %s: no answer within %s; the run was stopped (a drive in error recovery can hang; raise smartctl_timeout if this drive is just slow)", what, timeout)
		}
		return res, fmt.Errorf("smartctl %s: stopped: %w", what, ctxErr)
	}
	var exitErr *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &exitErr) && exitErr.Exited():
		res.exit = ExitStatus(exitErr.ExitCode())
	case errors.As(err, &exitErr):
		return res, fmt.Errorf("smartctl %s: %q ended abnormally: %s", what, r.program(), exitErr)
	case errors.Is(err, exec.ErrNotFound) || errors.Is(err, fs.ErrNotExist):
		return res, fmt.Errorf("smartctl %s: program %q not found; install smartmontools or set smartctl= in the [hal] section to its path: %w", what, r.program(), err)
	default:
		return res, fmt.Errorf("smartctl %s: could not run %q: %w", what, r.program(), err)
	}
	log.Debug("smartctl ran", "exit_status", int(res.exit), "stdout_bytes", len(res.stdout))
	return res, nil
}

// unrecognisedJSON reports whether smartctl rejected --json: it is older
// than 7.0 and has to be asked for text.
func (res runResult) unrecognisedJSON() bool {
	if !res.exit.CommandLineError() {
		return false
	}
	all := strings.ToLower(string(res.stdout) + string(res.stderr))
	return strings.Contains(all, "unrecognized option") && strings.Contains(all, "json")
}

// Read runs `smartctl --json=c -a [-d TYPE] DEVICE` and parses the report.
// The snapshot keeps smartctl's exit status whatever it is; Read fails only
// when smartctl could not run, did not finish in time, or printed no device
// data (then the error names the device and says what smartctl said).
// smartctl older than 7.0, which has no --json, is asked for text instead.
func (r *Runner) Read(ctx context.Context, d DriveSpec) (*hal.DriveSnapshot, error) {
	if d.Device == "" {
		return nil, errors.New("smartctl: no device given")
	}
	args := []string{"-a"}
	if d.Type != "" {
		args = append(args, "-d", d.Type)
	}
	args = append(args, d.Device)
	name := d.String()

	res, err := r.run(ctx, name, append([]string{"--json=c"}, args...)...)
	if err != nil {
		return nil, err
	}
	if res.unrecognisedJSON() {
		res, err = r.run(ctx, name, args...)
		if err != nil {
			return nil, err
		}
	}
	s, perr := Parse(res.stdout)
	if perr != nil {
		var nd *NoDataError
		if errors.As(perr, &nd) {
			exit := res.exit
			nd.ExitStatus = &exit
			if len(nd.Messages) == 0 {
				nd.Messages = stderrLines(res.stderr)
			}
		}
		if errors.Is(perr, ErrEmpty) && len(res.stderr) > 0 {
			perr = &NoDataError{ExitStatus: &res.exit, Messages: stderrLines(res.stderr)}
		}
		return nil, &ParseError{Source: "smartctl " + name, Err: perr}
	}
	// The process's status is the authority; the JSON copy should agree.
	if s.ExitStatus != nil && *s.ExitStatus != int(res.exit) {
		s.Messages = append(s.Messages, fmt.Sprintf("dcagent: smartctl's JSON says exit status %d, the process exited with %d; kept %d", *s.ExitStatus, res.exit, res.exit))
	}
	s.ExitStatus = ptrInt(int(res.exit))
	s.Source = name
	return s, nil
}

// Scan runs `smartctl --scan` and returns the drives it found, each with
// the -d type smartctl proposes.
func (r *Runner) Scan(ctx context.Context) ([]DriveSpec, error) {
	res, err := r.run(ctx, "--scan", "--scan", "--json=c")
	if err != nil {
		return nil, err
	}
	if res.unrecognisedJSON() {
		if res, err = r.run(ctx, "--scan", "--scan"); err != nil {
			return nil, err
		}
	}
	if res.exit.RunFailed() {
		msg := strings.Join(stderrLines(append(res.stdout, res.stderr...)), " / ")
		return nil, fmt.Errorf("smartctl --scan: exit status %s: %s", res.exit, msg)
	}
	devs, err := ParseScan(res.stdout)
	if err != nil {
		return nil, fmt.Errorf("smartctl --scan: %w", err)
	}
	return devs, nil
}

// Drives returns the drives to watch: the configured entries when there
// are any (device[:type], see ParseDriveSpec), otherwise what
// `smartctl --scan` finds.
func (r *Runner) Drives(ctx context.Context, configured []string) ([]DriveSpec, error) {
	if len(configured) > 0 {
		return ParseDriveSpecs(configured)
	}
	return r.Scan(ctx)
}

// ParseScan reads `smartctl --scan` output, JSON or text.
func ParseScan(data []byte) ([]DriveSpec, error) {
	if len(bytes.TrimSpace(data)) == 0 {
		return nil, nil // smartctl found nothing
	}
	_, err := Parse(data)
	var scan *ScanOutputError
	if errors.As(err, &scan) {
		return scan.Devices, nil
	}
	if err == nil {
		return nil, fmt.Errorf("%w: this is a device report, not --scan output", ErrNotSmartctl)
	}
	return nil, err
}

// stderrLines turns smartctl's stderr into message lines.
func stderrLines(b []byte) []string {
	var out []string
	for _, l := range strings.Split(string(b), "\n") {
		if l = strings.TrimSpace(l); l != "" && len(out) < 8 {
			out = append(out, l)
		}
	}
	return out
}

// limitedBuffer keeps the first limit bytes written to it and drops the
// rest, so that a runaway program cannot fill memory.
type limitedBuffer struct {
	bytes.Buffer
	limit int
}

func (b *limitedBuffer) Write(p []byte) (int, error) {
	if room := b.limit - b.Len(); room > 0 {
		if len(p) > room {
			b.Buffer.Write(p[:room])
		} else {
			b.Buffer.Write(p)
		}
	}
	return len(p), nil
}

var _ io.Writer = (*limitedBuffer)(nil)
