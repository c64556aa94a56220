package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/dcagent/dcagent/agent/config"
	"github.com/dcagent/dcagent/agent/diag"
)

func init() {
	register(command{name: "diag", summary: "check the device on the spot: diag [--json] [--offline]", run: runDiag})
	addDiagChecks(diagSource{name: "hardware", checks: hardwareChecks})
}

const diagUsage = `usage: dcagent diag [--json] [--offline] [--sysfs-root DIR] [--smartctl PATH] [--timeout D]

Checks the device on the spot and says, in plain words, what is wrong and
what to do: the configuration, and the hardware (temperatures, fans,
voltages and power supplies from hwmon; the backplane's slots; every
drive's SMART health through smartctl). It needs no daemon and, with
--offline, no network.

Each finding is ok, WARN or FAIL, with what to do. The exit status is 1
when any finding is FAIL, 0 otherwise (warnings included).

--json prints one object: {"status", "findings": [{"check", "status",
"subject", "message", "action"}], "notes"}.

options:
`

// diagSource is one part of the agent that adds checks to dcagent diag.
// Network sources are skipped with --offline.
type diagSource struct {
	name    string
	network bool
	checks  func(cfg *config.Config, logger *slog.Logger) []diag.Check
}

var diagSources []diagSource

// addDiagChecks registers a part's checks; call it from the init of the
// part's own file in this package.
func addDiagChecks(s diagSource) { diagSources = append(diagSources, s) }

func hardwareChecks(cfg *config.Config, logger *slog.Logger) []diag.Check {
	return diag.HardwareFromConfig(cfg.HAL, logger).Checks()
}

func runDiag(env *cmdEnv, args []string) int {
	fs := env.newFlags("diag")
	asJSON := fs.Bool("json", false, "print the findings as one JSON object")
	offline := fs.Bool("offline", false, "run only the checks that need no network")
	sysfsRoot := fs.String("sysfs-root", "", "read hwmon and enclosures under this root instead of [hal] sysfs_root (e.g. a saved or simulated tree)")
	smartctlPath := fs.String("smartctl", "", "the smartctl program, instead of [hal] smartctl")
	timeout := fs.Duration("timeout", diag.DefaultTimeout, "time limit of each check")
	fs.Usage = func() {
		fmt.Fprint(env.stderr, diagUsage)
		fs.PrintDefaults()
	}
	if ok, st := parseFlags(fs, args); !ok {
		return st
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(env.stderr, "dcagent diag: unexpected argument %q\n", fs.Arg(0))
		return 2
	}

	cfg, cfgFinding := loadDiagConfig(env.configPath)
	if *sysfsRoot != "" {
		cfg.HAL.SysfsRoot = *sysfsRoot
	}
	if *smartctlPath != "" {
		cfg.HAL.Smartctl = *smartctlPath
	}
	checks := []diag.Check{{Name: "config", Run: func(context.Context) []diag.Finding { return []diag.Finding{cfgFinding} }}}
	skipped, network := 0, 0
	for _, s := range diagSources {
		if s.network {
			network++
			if *offline {
				skipped++
				continue
			}
		}
		checks = append(checks, s.checks(cfg, nil)...)
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	report := diag.Run(ctx, checks, *timeout)
	switch {
	case *offline && skipped > 0:
		report.Note("offline: the network checks were skipped")
	case !*offline && network == 0:
		report.Note("the network checks (DNS, UDP and TCP reachability of the backend, the pinned CA, the certificate, the key store) are not part of this build's diag yet; this run checked the configuration and the hardware")
	}
	var err error
	if *asJSON {
		err = report.WriteJSON(env.stdout)
	} else {
		err = report.WriteText(env.stdout)
	}
	if err != nil {
		return fail(env, "diag", err)
	}
	return report.ExitStatus()
}

// loadDiagConfig reads the configuration for diag. diag must run on a
// device whose configuration is missing or broken (that is when people run
// it), so it falls back to the defaults and reports the problem as a
// finding instead of stopping.
func loadDiagConfig(path string) (*config.Config, diag.Finding) {
	f := diag.Finding{Check: "config", Subject: path}
	cfg, err := config.Load(path)
	switch {
	case err == nil:
		f.Status, f.Message = diag.OK, "read and valid"
		return cfg, f
	case errors.Is(err, fs.ErrNotExist):
		f.Status = diag.Warn
		f.Message = "there is no configuration file here; the checks used the default settings"
		f.Action = "Install the configuration (dcagent.conf), or name it with --config FILE."
	default:
		f.Status = diag.Fail
		f.Message = strings.TrimPrefix(err.Error(), "config: ")
		f.Action = "Fix what the message names; the daemon refuses to start (or to reload) until then. The other checks used the default settings and the file's state directory."
	}
	cfg = config.Default()
	// The daemon may be running with the previous configuration: reach it
	// through the state directory the file names, if it can be read.
	if dir, err := config.StateDirOf(path); err == nil {
		cfg.Device.StateDir = dir
	}
	return cfg, f
}
