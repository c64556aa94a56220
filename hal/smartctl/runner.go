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

// maxOutput bounds what is kept of smartctl's stdout: a run that prints
// more is stopped and fails, since no smartctl report is that large.
const maxOutput = MaxInputBytes

// stderrExcerpt is how much of smartctl's stderr is kept for messages: it
// prints a line or two there, never more.
const stderrExcerpt = 512

// maxStderr is how much stderr a run may print (kept or not) before it is
// stopped: a program that prints this much there is not smartctl at work.
const maxStderr = 1 << 20

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
	stdout []byte
	// stderr is the start of what smartctl printed there (stderrExcerpt
	// bytes at most); stderrTotal counts all of it.
	stderr      []byte
	stderrTotal int64
	exit        ExitStatus
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

	// A run that prints too much is stopped through this context, whose
	// cancellation kills the process group (configureKill).
	ctx, stop := context.WithCancel(ctx)
	defer stop()

	cmd := exec.CommandContext(ctx, r.program(), args...)
	stdout := &cappedBuffer{keep: maxOutput, stopAfter: maxOutput, stop: stop}
	stderr := &cappedBuffer{keep: stderrExcerpt, stopAfter: maxStderr, stop: stop}
	cmd.Stdout, cmd.Stderr = stdout, stderr
	configureKill(cmd)
	// Children that keep the output pipes open (a shell wrapper's sleep)
	// must not hold Wait past the kill.
	cmd.WaitDelay = 2 * time.Second

	began := time.Now()
	err := cmd.Run()
	elapsed := time.Since(began)
	res := runResult{stdout: stdout.buf, stderr: stderr.buf, stderrTotal: stderr.total}
	log := r.logger().With("program", r.program(), "drive", what, "args", strings.Join(args, " "), "elapsed", elapsed.Round(time.Millisecond))

	// Too much output is the first thing to say: the kill it caused also
	// ended the context.
	switch {
	case stdout.stopped:
		log.Debug("smartctl printed too much on stdout", "limit", maxOutput)
		return runResult{}, fmt.Errorf("smartctl %s: %q printed more than %d bytes on stdout, more than any smartctl report; the run was stopped and its output dropped (is it really smartctl?)", what, r.program(), maxOutput)
	case stderr.stopped:
		log.Debug("smartctl printed too much on stderr", "limit", maxStderr)
		return runResult{}, fmt.Errorf("smartctl %s: %q printed more than %d bytes on stderr; the run was stopped (is it really smartctl?); it began: %s", what, r.program(), maxStderr, Printable(string(stderr.buf), 200))
	}
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
	text := false
	if res.unrecognisedJSON() {
		text = true
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
				nd.Messages = res.stderrLines()
			}
		}
		if errors.Is(perr, ErrEmpty) && len(res.stderr) > 0 {
			perr = &NoDataError{ExitStatus: &res.exit, Messages: res.stderrLines()}
		}
		return nil, &ParseError{Source: "smartctl " + name, Err: perr}
	}
	// The process's status is the authority; the JSON copy should agree.
	if s.ExitStatus != nil && *s.ExitStatus != int(res.exit) {
		s.Messages = append(s.Messages, fmt.Sprintf("dcagent: smartctl's JSON says exit status %d, the process exited with %d; kept %d", *s.ExitStatus, res.exit, res.exit))
	}
	s.ExitStatus = ptrInt(int(res.exit))
	s.Source = name
	// (A smartctl older than 7.0, answered in text above, is left alone:
	// its phy log alone is not a report the text parser reads.)
	if s.Protocol == hal.ProtocolSCSI && s.Counters.LinkErrors == nil && !text {
		r.readSASPhy(ctx, d, s)
	}
	return s, nil
}

// readSASPhy adds a SAS drive's link errors, which `-a` leaves out: the
// phy log (`-l sasphy`) counts invalid DWORDs, lost DWORD sync and phy
// reset problems, what a failing backplane or cable shows first. A drive
// or smartctl that cannot give it leaves the counter absent, with a note.
func (r *Runner) readSASPhy(ctx context.Context, d DriveSpec, s *hal.DriveSnapshot) {
	args := []string{"--json=c", "-l", "sasphy"}
	if d.Type != "" {
		args = append(args, "-d", d.Type)
	}
	args = append(args, d.Device)
	res, err := r.run(ctx, d.String()+" sasphy", args...)
	if err != nil {
		s.Messages = append(s.Messages, "dcagent: the SAS phy log could not be read: "+Printable(err.Error(), 300))
		return
	}
	var notes []string
	if v, ok := sasLinkErrors(res.stdout, &notes); ok {
		s.Counters.LinkErrors = ptrU64(v)
	}
	s.Messages = append(s.Messages, notes...)
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
		msgs := append(messageLines(res.stdout), res.stderrLines()...)
		return nil, fmt.Errorf("smartctl --scan: exit status %s: %s", res.exit, joinMessages(msgs))
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

// stderrLines turns the kept start of smartctl's stderr into message
// lines, saying so when the rest was dropped.
func (res runResult) stderrLines() []string {
	lines := messageLines(res.stderr)
	if dropped := res.stderrTotal - int64(len(res.stderr)); dropped > 0 {
		lines = append(lines, fmt.Sprintf("dcagent: smartctl printed %d bytes on stderr; only the first %d are kept", res.stderrTotal, len(res.stderr)))
	}
	return lines
}

// messageLines turns smartctl's output into message lines: at most
// maxErrorMessages non-blank lines, each clipped and printable.
func messageLines(b []byte) []string {
	var out []string
	for len(b) > 0 && len(out) < maxErrorMessages {
		line := b
		if i := bytes.IndexByte(b, '\n'); i >= 0 {
			line, b = b[:i], b[i+1:]
		} else {
			b = nil
		}
		// Clip before converting: a line can be megabytes long.
		var cut int
		if len(line) > MaxMessageBytes {
			cut = len(line) - MaxMessageBytes
			line = line[:MaxMessageBytes]
		}
		if l := strings.TrimSpace(string(line)); l != "" {
			l = Printable(l, 0)
			if cut > 0 {
				l += fmt.Sprintf("… [%d more bytes cut]", cut)
			}
			out = append(out, l)
		}
	}
	return out
}

// cappedBuffer keeps the first keep bytes written to it and counts the
// rest. Once more than stopAfter bytes have come, it calls stop (which
// kills the run) and fails the write, so that os/exec stops copying.
//
// It must not embed bytes.Buffer nor have a ReadFrom method: os/exec copies
// the pipe with io.Copy, which would call ReadFrom and bypass Write's limit.
type cappedBuffer struct {
	buf       []byte
	keep      int
	stopAfter int64
	stop      func()
	total     int64
	stopped   bool
}

var errTooMuchOutput = errors.New("smartctl: too much output")

func (b *cappedBuffer) Write(p []byte) (int, error) {
	if b.stopped {
		return 0, errTooMuchOutput
	}
	b.total += int64(len(p))
	if room := b.keep - len(b.buf); room > 0 {
		b.buf = appendCapped(b.buf, p[:min(room, len(p))], b.keep)
	}
	if b.total > b.stopAfter {
		b.stopped = true
		b.stop()
		return 0, errTooMuchOutput
	}
	return len(p), nil
}

// appendCapped appends p to buf, growing it by doubling but never to a
// capacity above limit (append alone could reserve twice the limit).
func appendCapped(buf, p []byte, limit int) []byte {
	if need := len(buf) + len(p); need > cap(buf) {
		c := min(max(2*cap(buf), need, 4096), limit)
		grown := make([]byte, len(buf), c)
		copy(grown, buf)
		buf = grown
	}
	return append(buf, p...)
}

var _ io.Writer = (*cappedBuffer)(nil)
