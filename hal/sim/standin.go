package sim

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
)

// Exit status bits of smartctl the stand-in sets for problems of its own
// (smartctl(8), RETURN VALUES).
const (
	exitCommandLine = 1 << 0
	exitDeviceOpen  = 1 << 1
)

// standinVersion is the smartctl version the stand-in claims to be.
var standinVersion = []any{json.Number("7"), json.Number("3")}

// smartctlArgs is what the stand-in understood of its command line.
type smartctlArgs struct {
	json, compact bool
	scan          bool
	version, help bool
	sasphy        bool // -x or -l sasphy: include the SAS phy log
	devType       string
	device        string
}

// options smartctl takes with an argument (short and long forms).
var argOptions = map[string]bool{
	"-d": true, "--device": true, "-l": true, "--log": true, "-n": true, "--nocheck": true,
	"-T": true, "--tolerance": true, "-b": true, "--badsum": true, "-r": true, "--report": true,
	"-q": true, "--quietmode": true, "-f": true, "--format": true, "-F": true, "--firmwarebug": true,
	"-v": true, "--vendorattribute": true, "-s": true, "--smart": true, "-o": true, "--offlineauto": true,
	"-S": true, "--saveauto": true, "-t": true, "--test": true, "-P": true, "--presets": true,
	"-B": true, "--drivedb": true, "-g": true, "--get": true, "--set": true, "-C": true,
}

// flags smartctl takes without an argument that change nothing here.
var plainFlags = map[string]bool{
	"-a": true, "--all": true, "-x": true, "--xall": true, "-i": true, "--info": true,
	"-H": true, "--health": true, "-A": true, "--attributes": true, "-c": true, "--capabilities": true,
	"--identify": true, "-X": true, "--abort": true, "--scan-open": false,
}

func parseSmartctlArgs(args []string) (smartctlArgs, error) {
	var a smartctlArgs
	for i := 0; i < len(args); i++ {
		arg := args[i]
		name, value, hasValue := strings.Cut(arg, "=")
		if !strings.HasPrefix(arg, "--") {
			name, hasValue = arg, false
			// -dsat: a short option with its argument attached.
			if len(arg) > 2 && arg[0] == '-' && argOptions[arg[:2]] {
				name, value, hasValue = arg[:2], arg[2:], true
			}
		}
		switch {
		case name == "-j" || name == "--json":
			a.json = true
			if hasValue {
				for _, c := range value {
					if !strings.ContainsRune("cgiosuv", c) {
						return a, fmt.Errorf("=======> INVALID ARGUMENT TO --json: %s", value)
					}
				}
				a.compact = strings.Contains(value, "c")
			}
		case name == "--scan" || name == "--scan-open":
			a.scan = true
		case name == "-V" || name == "--version" || name == "--copyright" || name == "--license":
			a.version = true
		case name == "-h" || name == "--help" || name == "--usage":
			a.help = true
		case name == "-x" || name == "--xall":
			a.sasphy = true
		case argOptions[name]:
			if !hasValue {
				if i+1 >= len(args) {
					return a, fmt.Errorf("=======> ARGUMENT REQUIRED FOR OPTION: %s", strings.TrimLeft(name, "-"))
				}
				i++
				value = args[i]
			}
			switch name {
			case "-d", "--device":
				a.devType = value
			case "-l", "--log":
				if value == "sasphy" || value == "sasphy,reset" {
					a.sasphy = true
				}
			}
		case plainFlags[name]:
		case strings.HasPrefix(arg, "-") && arg != "-":
			return a, fmt.Errorf("=======> UNRECOGNIZED OPTION: %s", strings.TrimLeft(name, "-"))
		default:
			if a.device != "" {
				return a, fmt.Errorf("ERROR: smartctl takes ONE device name as the final command-line argument.\nYou have provided %d device names: %s and %s", 2, a.device, arg)
			}
			a.device = arg
		}
	}
	return a, nil
}

// RunSmartctl is the smartctl stand-in: `dcsim hardware smartctl --state
// DIR ARGS...`. It answers `--scan`, `-a`/`-x` (and the other read-only
// report options) for the simulated drives in DIR at their current step,
// as `smartctl --json` does, with smartctl's exit status bits: 1 for a
// command line it does not take, 2 for a device it cannot open, the drive's
// own condition bits (failing, prefail attributes, error logs) otherwise.
// It prints JSON only; asked for text it says so and exits with bit 0.
func RunSmartctl(args []string, stdout, stderr io.Writer) int {
	if len(args) < 2 || args[0] != "--state" {
		fmt.Fprintln(stderr, "dcsim hardware smartctl: usage: smartctl --state DIR [smartctl options] [DEVICE]")
		fmt.Fprintln(stderr, "  (the simulator's <root>/bin/smartctl script passes --state for you)")
		return exitCommandLine
	}
	stateDir, rest := args[1], args[2:]
	argv := append([]any{"smartctl"}, toAny(rest)...)
	a, perr := parseSmartctlArgs(rest)

	// fail prints an error report the way smartctl does: JSON with the
	// message and exit status when --json was asked, text otherwise.
	fail := func(status int, msg string) int {
		if a.json {
			out := standinHeader(argv, status)
			out["smartctl"].(map[string]any)["messages"] = []any{map[string]any{"string": msg, "severity": "error"}}
			writeJSON(stdout, out, a.compact)
		} else {
			fmt.Fprintln(stdout, standinBanner)
			fmt.Fprintln(stdout, msg)
		}
		return status
	}
	if perr != nil {
		return fail(exitCommandLine, perr.Error()+"\nUse smartctl -h to get a usage summary")
	}
	if a.help {
		fmt.Fprintln(stdout, standinBanner)
		fmt.Fprintln(stdout, "This is the dcagent simulator's smartctl stand-in. It answers --scan and -a/-x with --json[=c] for the simulated drives.")
		return 0
	}
	if a.version {
		if a.json {
			writeJSON(stdout, standinHeader(argv, 0), a.compact)
		} else {
			fmt.Fprintln(stdout, standinBanner)
		}
		return 0
	}
	st, err := loadState(stateDir)
	if err != nil {
		return fail(exitDeviceOpen, err.Error())
	}
	if a.scan {
		return scanOutput(stdout, st, a, argv)
	}
	if a.device == "" {
		return fail(exitCommandLine, "ERROR: smartctl requires a device name as the final command-line argument.")
	}
	if !a.json {
		fmt.Fprintln(stderr, "dcsim hardware smartctl: this stand-in prints JSON reports only: add --json=c")
		return fail(exitCommandLine, "dcsim stand-in: text output is not simulated; ask with --json=c")
	}
	d := findDrive(st, a.device)
	if d == nil {
		return fail(exitDeviceOpen, fmt.Sprintf("Smartctl open device: %s failed: No such device", a.device))
	}
	if msg := typeMismatch(d, a.devType); msg != "" {
		return fail(exitDeviceOpen, msg)
	}
	r, err := renderDrive(stateDir, st, d, st.Step)
	if err != nil {
		return fail(exitDeviceOpen, err.Error())
	}
	if !a.sasphy {
		for k := range r {
			if strings.HasPrefix(k, "scsi_sas_port_") {
				delete(r, k)
			}
		}
	}
	sc := r.obj("smartctl", true)
	sc["argv"] = argv
	if a.devType != "" {
		r.obj("device", true)["type"] = a.devType
	}
	exit, _ := sc.num("exit_status")
	writeJSON(stdout, r, a.compact)
	return int(exit & 0xff)
}

const standinBanner = "smartctl 7.3 (dcagent simulator stand-in) [simulated drives]"

func standinHeader(argv []any, status int) map[string]any {
	return map[string]any{
		"json_format_version": []any{json.Number("1"), json.Number("0")},
		"smartctl": map[string]any{
			"version":       standinVersion,
			"svn_revision":  "dcsim",
			"platform_info": "dcsim stand-in",
			"build_info":    "(dcagent simulator)",
			"argv":          argv,
			"exit_status":   json.Number(fmt.Sprint(status)),
		},
	}
}

func scanOutput(w io.Writer, st *State, a smartctlArgs, argv []any) int {
	if !a.json {
		for _, d := range st.Drives {
			fmt.Fprintf(w, "%s -d %s # %s, %s device\n", d.Device, d.Type, infoName(&d), d.Protocol)
		}
		return 0
	}
	out := standinHeader(argv, 0)
	devs := []any{}
	for _, d := range st.Drives {
		devs = append(devs, map[string]any{"name": d.Device, "info_name": infoName(&d), "type": d.Type, "protocol": d.Protocol})
	}
	out["devices"] = devs
	writeJSON(w, out, a.compact)
	return 0
}

func infoName(d *Drive) string {
	if d.Protocol == "ATA" {
		return d.Device + " [SAT]"
	}
	return d.Device
}

// typeMismatch says why a -d type cannot reach a simulated drive, "" when
// it can. The simulator has no RAID controllers, so their types fail to
// open as they would on a machine without one.
func typeMismatch(d *Drive, t string) string {
	base, _, _ := strings.Cut(t, ",")
	switch base {
	case "", "auto", "test":
		return ""
	case "sat", "ata", "sntasmedia", "sntjmicron", "sntrealtek":
		if d.Protocol == "ATA" || (strings.HasPrefix(base, "snt") && d.Protocol == "NVMe") {
			return ""
		}
	case "scsi":
		if d.Protocol == "SCSI" {
			return ""
		}
	case "nvme":
		if d.Protocol == "NVMe" {
			return ""
		}
	default:
		return fmt.Sprintf("Smartctl open device: %s [%s] failed: the simulator has no such controller", d.Device, t)
	}
	return fmt.Sprintf("Smartctl open device: %s [%s] failed: the simulated drive is %s; -d %s cannot reach it", d.Device, t, d.Protocol, t)
}

func writeJSON(w io.Writer, v any, compact bool) {
	var b []byte
	if compact {
		b, _ = json.Marshal(v)
	} else {
		b, _ = json.MarshalIndent(v, "", "  ")
	}
	w.Write(append(b, '\n'))
}

func toAny(ss []string) []any {
	out := make([]any, len(ss))
	for i, s := range ss {
		out[i] = s
	}
	return out
}
