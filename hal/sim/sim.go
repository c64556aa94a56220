// Package sim is the simulated twin of the device's hardware sources: it
// writes a sysfs tree (hwmon chips for CPUs, board, power supplies and NVMe
// drives; an SES enclosure whose slots hold SCSI disks) under a root
// directory, and installs a stand-in smartctl that answers for the
// simulated drives by replaying real captured smartctl JSON. The tests, the
// `dcsim hardware` command, the fleet and the demo all use it, and the
// agent reads it with the same code it uses on a device (hal/hwmon,
// hal/enclosure, hal/smartctl), pointed at the root and the stand-in.
//
// The hardware changes step by step: one drive degrades (its media
// counters grow until its own verdict is FAILED, or it replays a series of
// captures in time order), several drives behind the backplane see their
// interface errors grow while their media stays clean (a failing backplane
// or cable), a fan stops, a CPU overheats, a power supply drops out. Every
// value is a function of the state file and the step number, so a step
// replays the same way every time; `dcsim hardware` advances the steps on a
// timer, tests call Advance.
//
// Layout of a root:
//
//	<root>/sys/...              the sysfs tree (use <root> as [hal] sysfs_root)
//	<root>/bin/smartctl         the stand-in (use it as [hal] smartctl)
//	<root>/state/state.json     the simulation's state
//	<root>/state/drives/*.json  the report each drive starts from
//
// The stand-in is a shell script that runs `dcsim hardware smartctl
// --state <root>/state ...` (or whatever Options.SmartctlCommand names), so
// no extra program is needed.
package sim

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Options says what hardware to simulate. The zero value (with Root set)
// is a two-socket server with four drives in a 12-slot backplane and one
// NVMe drive, all healthy.
type Options struct {
	// Root is the directory to build in. It is created if missing; it must
	// be empty or hold an earlier simulation, which is replaced.
	Root string
	// Captures is a folder of smartctl JSON reports to replay. "" looks for
	// the shared captures (DefaultCaptures); "none" makes drives up.
	Captures string
	// Drives is the number of SATA/SAS drives in the enclosure (default 4),
	// NVMe the number of NVMe drives outside it (default 1; -1 for none).
	Drives int
	NVMe   int
	// Slots is the number of enclosure slots (default 12, at least Drives).
	Slots int
	// Degrade names the drive that degrades: an enclosure slot number
	// ("1") or a drive name ("sdb", "nvme0", "/dev/nvme0"). "" for none.
	Degrade string
	// Series, when set, is a list of capture files of one drive in time
	// order; the degrading drive replays them, one per step.
	Series []string
	// Backplane lists the enclosure slots whose interface errors grow.
	Backplane []int
	// Onset is the first step at which the degrading drive and the
	// backplane change (default 1; step 0 is always a healthy baseline).
	Onset int
	// Events change the board and the enclosure at given steps.
	Events []Event
	// Start is the simulated time of step 0 (default now); StepDuration
	// the simulated time per step (default one hour).
	Start        time.Time
	StepDuration time.Duration
	// Seed makes the sensor jitter repeatable (default 1).
	Seed int64
	// Board is the board's sensors (default 2 CPUs of 4 cores, 4 fans, 2 PSUs).
	Board Board
	// SmartctlCommand is the command the stand-in script runs, to which it
	// appends "--state <dir>" and smartctl's arguments. Default: this
	// program with "hardware smartctl" (right for dcsim).
	SmartctlCommand []string
	// Logger gets a line per step; nil discards.
	Logger *slog.Logger
}

// Hardware is a simulation on disk.
type Hardware struct {
	root string
	log  *slog.Logger

	mu   sync.Mutex
	st   *State
	prev *tree // the tree as last written by this process
}

// Change is one thing that changed at a step, in words.
type Change struct {
	Step    int    `json:"step"`
	Subject string `json:"subject"` // "/dev/sdb (slot 1)", "fan 2", "enclosure slot 3"
	What    string `json:"what"`
}

func (c Change) String() string { return fmt.Sprintf("step %d: %s: %s", c.Step, c.Subject, c.What) }

// Create builds a new simulation under opts.Root: the sysfs tree at step
// 0, the drives' reports, the state and the stand-in smartctl.
func Create(opts Options) (*Hardware, error) {
	if opts.Root == "" {
		return nil, errors.New("sim: no root directory given")
	}
	root, err := filepath.Abs(opts.Root)
	if err != nil {
		return nil, fmt.Errorf("sim: %w", err)
	}
	if err := prepareRoot(root); err != nil {
		return nil, err
	}
	st, err := plan(root, opts)
	if err != nil {
		return nil, err
	}
	h := &Hardware{root: root, st: st, log: opts.Logger}
	if h.log == nil {
		h.log = slog.New(slog.DiscardHandler)
	}
	if err := saveState(h.StateDir(), st); err != nil {
		return nil, fmt.Errorf("sim: %w", err)
	}
	if err := h.writeWrapper(); err != nil {
		return nil, err
	}
	t := buildTree(st, st.Step)
	if err := writeTree(root, t, nil); err != nil {
		return nil, fmt.Errorf("sim: writing the sysfs tree: %w", err)
	}
	h.prev = t
	return h, nil
}

// Open attaches to a simulation made earlier (by another process, say).
func Open(root string, logger *slog.Logger) (*Hardware, error) {
	root, err := filepath.Abs(root)
	if err != nil {
		return nil, fmt.Errorf("sim: %w", err)
	}
	st, err := loadState(filepath.Join(root, "state"))
	if err != nil {
		return nil, err
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Hardware{root: root, st: st, log: logger}, nil
}

// prepareRoot makes root usable: created, empty, or holding an earlier
// simulation, whose parts are removed.
func prepareRoot(root string) error {
	if err := os.MkdirAll(root, 0o755); err != nil {
		return fmt.Errorf("sim: %w", err)
	}
	entries, err := os.ReadDir(root)
	if err != nil {
		return fmt.Errorf("sim: %w", err)
	}
	if len(entries) == 0 {
		return nil
	}
	if _, err := os.Stat(statePath(filepath.Join(root, "state"))); err != nil {
		return fmt.Errorf("sim: %s is not empty and holds no earlier simulation; give an empty or new directory", root)
	}
	for _, part := range []string{"sys", "bin", "state"} {
		if err := os.RemoveAll(filepath.Join(root, part)); err != nil {
			return fmt.Errorf("sim: clearing the earlier simulation: %w", err)
		}
	}
	return nil
}

// Root is the simulation's root directory.
func (h *Hardware) Root() string { return h.root }

// SysfsRoot is the root to give the hwmon and enclosure readers
// ([hal] sysfs_root): the directory holding sys/.
func (h *Hardware) SysfsRoot() string { return h.root }

// SmartctlPath is the stand-in smartctl ([hal] smartctl).
func (h *Hardware) SmartctlPath() string { return filepath.Join(h.root, "bin", "smartctl") }

// StateDir holds state.json and the drives' reports.
func (h *Hardware) StateDir() string { return filepath.Join(h.root, "state") }

// State returns a copy of the current state.
func (h *Hardware) State() State {
	h.mu.Lock()
	defer h.mu.Unlock()
	st := *h.st
	st.Drives = append([]Drive(nil), h.st.Drives...)
	st.Events = append([]Event(nil), h.st.Events...)
	return st
}

// Step is the current step.
func (h *Hardware) Step() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.st.Step
}

// Drives lists the simulated drives.
func (h *Hardware) Drives() []Drive { return h.State().Drives }

// Report returns the JSON the stand-in prints for a drive (by name or
// device path) at the current step, as `smartctl --json=c -a` would.
func (h *Hardware) Report(drive string) ([]byte, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	d := findDrive(h.st, drive)
	if d == nil {
		return nil, fmt.Errorf("sim: no simulated drive %q", drive)
	}
	r, err := renderDrive(h.StateDir(), h.st, d, h.st.Step)
	if err != nil {
		return nil, err
	}
	return json.Marshal(r)
}

// Advance moves the hardware n steps on, rewriting the tree and the
// state, and returns what changed. It takes the state dir's lock, so a
// `dcsim hardware step` from another process and a running tick loop
// cannot interleave; it reloads the state first to see their steps.
func (h *Hardware) Advance(n int) ([]Change, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	unlock, err := lockState(h.StateDir())
	if err != nil {
		return nil, err
	}
	defer unlock()
	st, err := loadState(h.StateDir())
	if err != nil {
		return nil, err
	}
	if st.Step != h.st.Step {
		h.prev = nil // another process moved the tree; rewrite what differs
	}
	h.st = st
	var changes []Change
	for i := 0; i < n; i++ {
		before, err := h.factsAt(st.Step)
		if err != nil {
			return changes, err
		}
		st.Step++
		after, err := h.factsAt(st.Step)
		if err != nil {
			return changes, err
		}
		for j := range st.Drives {
			for _, w := range after[j].changes(before[j]) {
				changes = append(changes, Change{Step: st.Step, Subject: driveSubject(&st.Drives[j]), What: w})
			}
		}
		for _, e := range st.Events {
			if e.Step == st.Step {
				changes = append(changes, Change{Step: st.Step, Subject: eventSubject(e), What: eventWhat(e)})
			}
		}
		t := buildTree(st, st.Step)
		if err := writeTree(h.root, t, h.prev); err != nil {
			return changes, fmt.Errorf("sim: step %d: writing the tree: %w", st.Step, err)
		}
		h.prev = t
		if err := saveState(h.StateDir(), st); err != nil {
			return changes, fmt.Errorf("sim: step %d: %w", st.Step, err)
		}
		h.log.Debug("sim: step", "step", st.Step, "changes", len(changes))
	}
	return changes, nil
}

func (h *Hardware) factsAt(step int) ([]Facts, error) {
	out := make([]Facts, len(h.st.Drives))
	for i := range h.st.Drives {
		r, err := renderDrive(h.StateDir(), h.st, &h.st.Drives[i], step)
		if err != nil {
			return nil, err
		}
		out[i] = factsOf(r)
	}
	return out, nil
}

// Run advances one step every tick until ctx ends or, when steps > 0,
// that many steps were taken. onStep, if not nil, sees each step's changes.
func (h *Hardware) Run(ctx context.Context, tick time.Duration, steps int, onStep func(step int, changes []Change)) error {
	if tick <= 0 && steps <= 0 {
		return errors.New("sim: Run needs a tick, a number of steps, or both")
	}
	var timer *time.Ticker
	if tick > 0 {
		timer = time.NewTicker(tick)
		defer timer.Stop()
	}
	for taken := 0; steps <= 0 || taken < steps; taken++ {
		if timer != nil {
			select {
			case <-ctx.Done():
				return nil
			case <-timer.C:
			}
		} else if ctx.Err() != nil {
			return nil
		}
		ch, err := h.Advance(1)
		if err != nil {
			return err
		}
		if onStep != nil {
			onStep(h.Step(), ch)
		}
	}
	return nil
}

func driveSubject(d *Drive) string {
	if d.Slot >= 0 {
		return fmt.Sprintf("%s (slot %d)", d.Device, d.Slot)
	}
	return d.Device
}

func eventSubject(e Event) string {
	switch e.Kind {
	case EventFanFail:
		return fmt.Sprintf("nct6779 fan%d", e.Target)
	case EventOverheat:
		return fmt.Sprintf("CPU package %d", e.Target)
	case EventPSUFail:
		return fmt.Sprintf("power supply %d", e.Target)
	}
	return fmt.Sprintf("enclosure slot %d", e.Target)
}

func eventWhat(e Event) string {
	switch e.Kind {
	case EventFanFail:
		return "the fan stopped (0 RPM, alarm set)"
	case EventOverheat:
		return "temperature starts climbing 6 °C a step"
	case EventPSUFail:
		return "lost its input; the other supplies carry the load"
	case EventSlotFault:
		return "fault indicator on, status critical"
	case EventLocate:
		return "locate indicator on"
	}
	return string(e.Kind)
}

func findDrive(st *State, name string) *Drive {
	name = strings.TrimPrefix(name, "/dev/")
	for i := range st.Drives {
		if st.Drives[i].Name == name {
			return &st.Drives[i]
		}
	}
	return nil
}

// plan decides the drives, copies their reports into the state dir and
// returns the initial state.
func plan(root string, opts Options) (*State, error) {
	st := &State{
		Format:       stateFormat,
		Seed:         opts.Seed,
		Start:        opts.Start,
		StepDuration: Duration(opts.StepDuration),
		Onset:        opts.Onset,
		Board:        opts.Board,
		Events:       opts.Events,
	}
	if st.Seed == 0 {
		st.Seed = 1
	}
	if st.Start.IsZero() {
		st.Start = time.Now().Truncate(time.Second)
	}
	st.Start = st.Start.UTC()
	if st.StepDuration <= 0 {
		st.StepDuration = Duration(time.Hour)
	}
	if st.Onset <= 0 {
		st.Onset = 1
	}
	if st.Board == (Board{}) {
		st.Board = Board{CPUs: 2, Cores: 4, Fans: 4, PSUs: 2}
	}
	if st.Board.CPUs < 0 || st.Board.Cores < 0 || st.Board.Fans < 0 || st.Board.PSUs < 0 {
		return nil, fmt.Errorf("sim: board counts cannot be negative: %+v", st.Board)
	}
	nDrives, nNVMe, slots := opts.Drives, opts.NVMe, opts.Slots
	if nDrives == 0 {
		nDrives = 4
	}
	if nNVMe == 0 {
		nNVMe = 1
	}
	if nNVMe < 0 {
		nNVMe = 0
	}
	if nDrives < 0 || nDrives > 702 {
		return nil, fmt.Errorf("sim: %d drives: want 1 to 702", nDrives)
	}
	if slots == 0 {
		slots = max(12, nDrives)
	}
	if slots < nDrives {
		return nil, fmt.Errorf("sim: %d drives do not fit in %d enclosure slots", nDrives, slots)
	}
	st.Enclosure = EnclosureSpec{ID: fmt.Sprintf("0:0:%d:0", slots), LogicalID: "0x5000dc51e0000000", Slots: slots}

	cmd := opts.SmartctlCommand
	if len(cmd) == 0 {
		exe, err := os.Executable()
		if err != nil {
			return nil, fmt.Errorf("sim: finding this program for the smartctl stand-in: %w", err)
		}
		cmd = []string{exe, "hardware", "smartctl"}
	}
	st.SmartctlCommand = cmd

	// Where the reports come from.
	captures := map[string][]capture{}
	switch opts.Captures {
	case "none":
		st.MadeUp = true
	case "":
		if dir := DefaultCaptures(); dir != "" {
			c, err := findCaptures(dir)
			if err != nil {
				return nil, err
			}
			captures, st.Captures = c, dir
		}
		st.MadeUp = len(captures["ATA"])+len(captures["SCSI"]) == 0
	default:
		c, err := findCaptures(opts.Captures)
		if err != nil {
			return nil, err
		}
		if len(c["ATA"])+len(c["SCSI"]) == 0 {
			return nil, fmt.Errorf("sim: %s holds no smartctl JSON report of a healthy SATA or SAS drive to replay (health PASSED, smartctl exit status below 32)", opts.Captures)
		}
		captures, st.Captures = c, opts.Captures
	}

	drivesDir := filepath.Join(root, "state", "drives")
	if err := os.MkdirAll(drivesDir, 0o755); err != nil {
		return nil, fmt.Errorf("sim: %w", err)
	}
	used := map[string]int{} // capture path -> times used
	serials := map[string]bool{}
	pick := func(protocol string, preferFailable bool) *capture {
		list := captures[protocol]
		if len(list) == 0 {
			return nil
		}
		best := -1
		for i := range list {
			if preferFailable && list[i].attr5Thresh == 0 {
				continue
			}
			if best < 0 || used[list[i].path] < used[list[best].path] {
				best = i
			}
		}
		if best < 0 {
			return pick0(list, used)
		}
		used[list[best].path]++
		return &list[best]
	}

	degradeSlot, degradeName := -1, ""
	if opts.Degrade != "" {
		if n, err := strconv.Atoi(opts.Degrade); err == nil {
			if n < 0 || n >= nDrives {
				return nil, fmt.Errorf("sim: --degrade %d: the enclosure's drives are in slots 0 to %d", n, nDrives-1)
			}
			degradeSlot = n
		} else {
			degradeName = strings.TrimPrefix(opts.Degrade, "/dev/")
		}
	}
	backplane := map[int]bool{}
	for _, s := range opts.Backplane {
		if s < 0 || s >= nDrives {
			return nil, fmt.Errorf("sim: backplane fault on slot %d: the enclosure's drives are in slots 0 to %d", s, nDrives-1)
		}
		backplane[s] = true
	}

	add := func(d Drive, c *capture, n int) error {
		var data []byte
		if c != nil {
			b, err := os.ReadFile(c.path)
			if err != nil {
				return fmt.Errorf("sim: %w", err)
			}
			data, d.Source, d.Model, d.Serial = b, c.path, c.model, c.serial
		} else {
			r := madeUpReport(d.Protocol, n)
			b, err := json.MarshalIndent(r, "", "  ")
			if err != nil {
				return err
			}
			data, d.Source, d.Serial = b, "made up (no captures)", r.str("serial_number")
			d.Model = r.str("model_name")
			if d.Model == "" {
				d.Model = r.str("scsi_model_name")
			}
		}
		// Two simulated drives must not share a serial: history is kept
		// per serial. Captures with a redacted serial, or one capture used
		// twice, get the drive's name appended.
		if d.Serial == "" || serials[d.Serial] {
			d.Serial = strings.TrimSpace(d.Serial+"-"+d.Name) + "-SIM"
			d.Serial = strings.TrimPrefix(d.Serial, "-")
		}
		serials[d.Serial] = true
		d.Base = filepath.Join("drives", d.Name+".json")
		if err := os.WriteFile(filepath.Join(drivesDir, d.Name+".json"), data, 0o644); err != nil {
			return fmt.Errorf("sim: %w", err)
		}
		st.Drives = append(st.Drives, d)
		return nil
	}

	for i := 0; i < nDrives; i++ {
		protocol := "ATA"
		if i%3 == 2 && (st.MadeUp || len(captures["SCSI"]) > 0) {
			protocol = "SCSI"
		}
		if !st.MadeUp && len(captures["ATA"]) == 0 {
			protocol = "SCSI"
		}
		name := sdName(i)
		role := RoleHealthy
		if i == degradeSlot || name == degradeName {
			role = RoleDegrading
		} else if backplane[i] {
			role = RoleBackplane
		}
		var c *capture
		if !st.MadeUp {
			c = pick(protocol, role == RoleDegrading && len(opts.Series) == 0)
		}
		d := Drive{Name: name, Device: "/dev/" + name, Type: typeFor(protocol), Protocol: protocol, Slot: i, SCSIAddr: fmt.Sprintf("0:0:%d:0", i), Role: role}
		if err := add(d, c, i); err != nil {
			return nil, err
		}
	}
	for i := 0; i < nNVMe; i++ {
		name := fmt.Sprintf("nvme%d", i)
		role := RoleHealthy
		if name == degradeName {
			role = RoleDegrading
		}
		var c *capture
		if !st.MadeUp {
			c = pick("NVMe", false)
		}
		d := Drive{Name: name, Device: "/dev/" + name, Type: "nvme", Protocol: "NVMe", Slot: -1, Role: role}
		if err := add(d, c, nDrives+i); err != nil {
			return nil, err
		}
	}
	if degradeName != "" && findDrive(st, degradeName) == nil {
		return nil, fmt.Errorf("sim: --degrade %s: no such simulated drive (drives: %s)", opts.Degrade, driveNames(st))
	}
	if len(opts.Series) > 0 {
		if err := attachSeries(st, drivesDir, opts.Series); err != nil {
			return nil, err
		}
	}
	for _, e := range st.Events {
		if err := e.check(st); err != nil {
			return nil, err
		}
	}
	sort.SliceStable(st.Events, func(i, j int) bool { return st.Events[i].Step < st.Events[j].Step })
	return st, nil
}

func pick0(list []capture, used map[string]int) *capture {
	best := 0
	for i := range list {
		if used[list[i].path] < used[list[best].path] {
			best = i
		}
	}
	used[list[best].path]++
	return &list[best]
}

func driveNames(st *State) string {
	var n []string
	for _, d := range st.Drives {
		n = append(n, d.Name)
	}
	return strings.Join(n, ", ")
}

// attachSeries gives the degrading drive a series of captures to replay.
func attachSeries(st *State, drivesDir string, series []string) error {
	var d *Drive
	for i := range st.Drives {
		if st.Drives[i].Role == RoleDegrading {
			d = &st.Drives[i]
		}
	}
	if d == nil {
		return errors.New("sim: a series of captures needs a degrading drive (--degrade)")
	}
	var first report
	for i, p := range series {
		r, err := loadReport(p)
		if err != nil {
			return fmt.Errorf("sim: series capture %d: %w", i+1, err)
		}
		proto := r.path("device").str("protocol")
		if proto == "" {
			return fmt.Errorf("sim: series capture %s is not a smartctl device report (no device.protocol)", p)
		}
		if first == nil {
			first = r
			d.Protocol, d.Type = proto, typeFor(proto)
			d.Model = firstNonEmpty(r.str("model_name"), r.str("scsi_model_name"))
			if s := r.str("serial_number"); s != "" {
				d.Serial = s
			}
		} else if proto != d.Protocol {
			return fmt.Errorf("sim: series capture %s is a %s drive, the first was %s: a series is one drive over time", p, proto, d.Protocol)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return fmt.Errorf("sim: %w", err)
		}
		name := fmt.Sprintf("%s.series.%03d.json", d.Name, i)
		if err := os.WriteFile(filepath.Join(drivesDir, name), b, 0o644); err != nil {
			return fmt.Errorf("sim: %w", err)
		}
		d.Series = append(d.Series, filepath.Join("drives", name))
	}
	if d.Slot >= 0 && d.Protocol == "NVMe" {
		return fmt.Errorf("sim: series is of an NVMe drive; degrade an NVMe drive (--degrade nvme0) to replay it")
	}
	d.Source = fmt.Sprintf("series of %d captures from %s", len(series), filepath.Dir(series[0]))
	return nil
}

// writeWrapper installs <root>/bin/smartctl.
func (h *Hardware) writeWrapper() error {
	bin := filepath.Join(h.root, "bin")
	if err := os.MkdirAll(bin, 0o755); err != nil {
		return fmt.Errorf("sim: %w", err)
	}
	var b strings.Builder
	b.WriteString("#!/bin/sh\n")
	b.WriteString("# smartctl stand-in written by the dcagent hardware simulator: it answers\n")
	b.WriteString("# for the simulated drives in " + h.StateDir() + ".\n")
	b.WriteString("exec")
	for _, a := range h.st.SmartctlCommand {
		b.WriteString(" " + shellQuote(a))
	}
	b.WriteString(" --state " + shellQuote(h.StateDir()) + " \"$@\"\n")
	if err := writeAtomic(h.SmartctlPath(), []byte(b.String()), 0o755); err != nil {
		return fmt.Errorf("sim: writing the smartctl stand-in: %w", err)
	}
	return nil
}

func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

// WriteSummary prints what the simulation holds, for a person.
func (h *Hardware) WriteSummary(w io.Writer) {
	st := h.State()
	fmt.Fprintf(w, "simulated hardware at %s (step %d, one step = %s of drive time)\n", h.root, st.Step, time.Duration(st.StepDuration))
	fmt.Fprintf(w, "  sysfs root:  %s   ([hal] sysfs_root)\n", h.SysfsRoot())
	fmt.Fprintf(w, "  smartctl:    %s   ([hal] smartctl)\n", h.SmartctlPath())
	b := st.Board
	fmt.Fprintf(w, "  board:       %d CPU packages x %d cores (coretemp), nct6779 with %d fans and 7 voltages, %d PMBus power supplies\n", b.CPUs, b.Cores, b.Fans, b.PSUs)
	fmt.Fprintf(w, "  enclosure:   %s, %d slots\n", st.Enclosure.ID, st.Enclosure.Slots)
	switch {
	case st.MadeUp && st.Captures == "":
		fmt.Fprintln(w, "  drives:      made up by the simulator: no captures were found (name a folder with --captures, or put ../shared/testdata beside the repository)")
	case st.Captures != "":
		fmt.Fprintf(w, "  drives:      replaying captures from %s\n", st.Captures)
	}
	for _, d := range st.Drives {
		where := "outside the enclosure"
		if d.Slot >= 0 {
			where = fmt.Sprintf("slot %d", d.Slot)
		}
		role := string(d.Role)
		switch d.Role {
		case RoleDegrading:
			role = fmt.Sprintf("DEGRADING from step %d", st.Onset)
			if len(d.Series) > 0 {
				role = fmt.Sprintf("DEGRADING: replays %d captures, one per step", len(d.Series))
			}
		case RoleBackplane:
			role = fmt.Sprintf("BACKPLANE FAULT: link errors rise from step %d", st.Onset)
		}
		fmt.Fprintf(w, "    %-12s %-5s %-22s %-30s serial %-20s %s\n", d.Device, d.Protocol, where, d.Model, d.Serial, role)
		fmt.Fprintf(w, "    %-12s from %s\n", "", d.Source)
	}
	for _, e := range st.Events {
		fmt.Fprintf(w, "  at step %d: %s: %s\n", e.Step, eventSubject(e), eventWhat(e))
	}
}
