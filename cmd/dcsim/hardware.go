package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/dcagent/dcagent/hal/sim"
)

func init() {
	register(command{name: "hardware", summary: "simulated sensors, backplane and drives (with a smartctl stand-in)", run: runHardware})
}

const hardwareUsage = `usage:
  dcsim hardware --root DIR [options]           build simulated hardware and evolve it
  dcsim hardware step --root DIR [N]            advance an existing simulation N steps (default 1)
  dcsim hardware show --root DIR [--json]       print what an existing simulation holds
  dcsim hardware smartctl --state DIR ARGS...   the smartctl stand-in (DIR/../bin/smartctl runs it)

dcsim hardware writes a sysfs tree under DIR (hwmon chips for two CPUs, the
board's fans and voltages, two power supplies and the NVMe drives; an SES
enclosure whose slots hold the SATA/SAS drives) and DIR/bin/smartctl, which
answers for the simulated drives by replaying real smartctl JSON captures.
Point the agent at them with [hal] sysfs_root = DIR and smartctl = DIR/bin/smartctl.
Then it advances one step every --tick until SIGINT or SIGTERM (or --steps),
printing what changed. Every value is a function of the step, so a run
replays exactly.

options:
`

func runHardware(stdout, stderr io.Writer, args []string) int {
	if len(args) > 0 {
		switch args[0] {
		case "smartctl":
			return sim.RunSmartctl(args[1:], stdout, stderr)
		case "step":
			return runHardwareStep(stdout, stderr, args[1:])
		case "show":
			return runHardwareShow(stdout, stderr, args[1:])
		}
	}
	fs := newFlags("hardware", stderr)
	var (
		root      = fs.String("root", "", "directory to build the simulated hardware in (required; empty, new, or an earlier simulation)")
		captures  = fs.String("captures", "", "folder of smartctl JSON captures to replay (default: ../shared/testdata/smart/json when found; \"none\" makes drives up)")
		drives    = fs.Int("drives", 4, "SATA/SAS drives in the enclosure, in slots 0..N-1 (every third is SAS when SAS captures exist)")
		nvme      = fs.Int("nvme", 1, "NVMe drives outside the enclosure (nvme0...)")
		slots     = fs.Int("slots", 0, "enclosure slots (default 12, or --drives if more)")
		degrade   = fs.String("degrade", "", "the drive that degrades: a slot number (1) or a drive name (sdb, nvme0)")
		series    = fs.String("series", "", "captures of one drive in time order for the degrading drive to replay, one per step: FILE,FILE,... or a folder (files sorted by name)")
		backplane = fs.String("backplane-fault", "", "slots whose interface errors rise while media stays clean, e.g. 1,2,3 (a failing backplane or cable)")
		onset     = fs.Int("onset", 1, "first step at which the degrading drive and the backplane fault change (step 0 is a healthy baseline)")
		tick      = fs.Duration("tick", 10*time.Second, "real time between steps; 0 with --steps 0 only builds the hardware and exits")
		steps     = fs.Int("steps", 0, "stop after this many steps (0: run until SIGINT/SIGTERM)")
		stepTime  = fs.Duration("step-time", 0, "drive time one step stands for in the reports' clocks (default: --tick, or 1h when --tick is 0)")
		seed      = fs.Int64("seed", 1, "seed of the sensors' small jitter")
		jsonOut   = fs.Bool("json", false, "print the setup and each step's changes as JSON lines")
		events    eventList
	)
	fs.Var(&events, "at", "STEP:KIND[:TARGET] changes the board or enclosure at a step; repeatable. Kinds: fan-fail[:FAN 1..], overheat[:CPU 0..], psu-fail[:PSU 1..], slot-fault:SLOT, locate:SLOT")
	fs.Usage = func() {
		fmt.Fprint(stderr, hardwareUsage)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "dcsim hardware: unexpected argument %q\n", fs.Arg(0))
		return 2
	}
	if *root == "" {
		fmt.Fprintln(stderr, "dcsim hardware: --root DIR is required (the directory to build the simulated hardware in)")
		return 2
	}
	if *tick < 0 || *steps < 0 || *stepTime < 0 {
		fmt.Fprintln(stderr, "dcsim hardware: --tick, --steps and --step-time cannot be negative")
		return 2
	}
	bp, err := parseSlots(*backplane)
	if err != nil {
		fmt.Fprintf(stderr, "dcsim hardware: --backplane-fault: %v\n", err)
		return 2
	}
	seriesFiles, err := parseSeries(*series)
	if err != nil {
		fmt.Fprintf(stderr, "dcsim hardware: --series: %v\n", err)
		return 2
	}
	st := *stepTime
	if st == 0 {
		st = *tick
		if st == 0 {
			st = time.Hour
		}
	}
	nv := *nvme
	if nv == 0 {
		nv = -1
	}
	hw, err := sim.Create(sim.Options{
		Root: *root, Captures: *captures, Drives: *drives, NVMe: nv, Slots: *slots,
		Degrade: *degrade, Series: seriesFiles, Backplane: bp, Onset: *onset,
		Events: events, StepDuration: st, Seed: *seed,
	})
	if err != nil {
		fmt.Fprintf(stderr, "dcsim hardware: %v\n", err)
		return 1
	}
	if *jsonOut {
		printSetupJSON(stdout, hw)
	} else {
		hw.WriteSummary(stdout)
	}
	if *tick == 0 && *steps == 0 {
		return 0
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if !*jsonOut {
		if *steps > 0 {
			fmt.Fprintf(stdout, "advancing %d steps, one every %s\n", *steps, *tick)
		} else {
			fmt.Fprintf(stdout, "advancing one step every %s until interrupted\n", *tick)
		}
	}
	err = hw.Run(ctx, *tick, *steps, func(step int, changes []sim.Change) {
		printChanges(stdout, step, changes, *jsonOut)
	})
	if err != nil {
		fmt.Fprintf(stderr, "dcsim hardware: %v\n", err)
		return 1
	}
	if !*jsonOut {
		fmt.Fprintf(stdout, "stopped at step %d; the hardware stays in %s\n", hw.Step(), hw.Root())
	}
	return 0
}

func runHardwareStep(stdout, stderr io.Writer, args []string) int {
	fs := newFlags("hardware step", stderr)
	root := fs.String("root", "", "the simulation's directory (required)")
	jsonOut := fs.Bool("json", false, "print the changes as JSON lines")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: dcsim hardware step --root DIR [--json] [N]\n\nAdvances an existing simulation N steps (default 1) and prints what changed.")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	n := 1
	if fs.NArg() > 1 {
		fmt.Fprintln(stderr, "dcsim hardware step: give at most one number of steps")
		return 2
	}
	if fs.NArg() == 1 {
		v, err := strconv.Atoi(fs.Arg(0))
		if err != nil || v < 1 {
			fmt.Fprintf(stderr, "dcsim hardware step: %q is not a number of steps >= 1\n", fs.Arg(0))
			return 2
		}
		n = v
	}
	if *root == "" {
		fmt.Fprintln(stderr, "dcsim hardware step: --root DIR is required")
		return 2
	}
	hw, err := sim.Open(*root, nil)
	if err != nil {
		fmt.Fprintf(stderr, "dcsim hardware step: %v\n", err)
		return 1
	}
	changes, err := hw.Advance(n)
	for step := hw.Step() - n + 1; step <= hw.Step(); step++ {
		var these []sim.Change
		for _, c := range changes {
			if c.Step == step {
				these = append(these, c)
			}
		}
		printChanges(stdout, step, these, *jsonOut)
	}
	if err != nil {
		fmt.Fprintf(stderr, "dcsim hardware step: %v\n", err)
		return 1
	}
	return 0
}

func runHardwareShow(stdout, stderr io.Writer, args []string) int {
	fs := newFlags("hardware show", stderr)
	root := fs.String("root", "", "the simulation's directory (required)")
	jsonOut := fs.Bool("json", false, "print as JSON")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if *root == "" || fs.NArg() > 0 {
		fmt.Fprintln(stderr, "usage: dcsim hardware show --root DIR [--json]")
		return 2
	}
	hw, err := sim.Open(*root, nil)
	if err != nil {
		fmt.Fprintf(stderr, "dcsim hardware show: %v\n", err)
		return 1
	}
	if *jsonOut {
		printSetupJSON(stdout, hw)
	} else {
		hw.WriteSummary(stdout)
	}
	return 0
}

func printSetupJSON(w io.Writer, hw *sim.Hardware) {
	st := hw.State()
	b, _ := json.Marshal(struct {
		SysfsRoot string    `json:"sysfs_root"`
		Smartctl  string    `json:"smartctl"`
		StateDir  string    `json:"state_dir"`
		State     sim.State `json:"state"`
	}{hw.SysfsRoot(), hw.SmartctlPath(), hw.StateDir(), st})
	fmt.Fprintln(w, string(b))
}

func printChanges(w io.Writer, step int, changes []sim.Change, asJSON bool) {
	if asJSON {
		if changes == nil {
			changes = []sim.Change{}
		}
		b, _ := json.Marshal(struct {
			Step    int          `json:"step"`
			Changes []sim.Change `json:"changes"`
		}{step, changes})
		fmt.Fprintln(w, string(b))
		return
	}
	if len(changes) == 0 {
		fmt.Fprintf(w, "step %d: no change\n", step)
		return
	}
	for _, c := range changes {
		fmt.Fprintln(w, c.String())
	}
}

// eventList collects repeated --at flags.
type eventList []sim.Event

func (e *eventList) String() string {
	var s []string
	for _, ev := range *e {
		s = append(s, ev.String())
	}
	return strings.Join(s, " ")
}

func (e *eventList) Set(v string) error {
	ev, err := sim.ParseEvent(v)
	if err != nil {
		return err
	}
	*e = append(*e, ev)
	return nil
}

func parseSlots(s string) ([]int, error) {
	var out []int
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p == "" {
			continue
		}
		n, err := strconv.Atoi(p)
		if err != nil || n < 0 {
			return nil, fmt.Errorf("%q is not a slot number", p)
		}
		out = append(out, n)
	}
	return out, nil
}

// parseSeries reads FILE,FILE,... or a folder of *.json files in name order.
func parseSeries(s string) ([]string, error) {
	if s == "" {
		return nil, nil
	}
	if fi, err := os.Stat(s); err == nil && fi.IsDir() {
		m, err := filepath.Glob(filepath.Join(s, "*.json"))
		if err != nil {
			return nil, err
		}
		if len(m) == 0 {
			return nil, fmt.Errorf("%s holds no *.json captures", s)
		}
		sort.Strings(m)
		return m, nil
	}
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			if _, err := os.Stat(p); err != nil {
				return nil, err
			}
			out = append(out, p)
		}
	}
	return out, nil
}
