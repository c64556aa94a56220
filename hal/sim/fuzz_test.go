package sim

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
)

// FuzzStandin feeds arbitrary command lines to the smartctl stand-in and
// arbitrary text to the event parser. Neither may panic; the stand-in's
// JSON, when it prints JSON, must parse and carry the exit status it
// returns.
func FuzzStandin(f *testing.F) {
	h, err := Create(Options{Root: f.TempDir(), Captures: "none", Drives: 3, Degrade: "0", Backplane: []int{1}})
	if err != nil {
		f.Fatal(err)
	}
	if _, err := h.Advance(3); err != nil {
		f.Fatal(err)
	}
	for _, seed := range []string{
		"--json=c\x00-a\x00/dev/sda",
		"--json=c\x00-a\x00-d\x00sat\x00/dev/sdb",
		"-j\x00-x\x00-dscsi\x00/dev/sdc",
		"--scan\x00--json=c",
		"--scan-open",
		"--json=c\x00-a\x00-d\x00megaraid,0\x00/dev/sda",
		"--json=q\x00-a\x00sda",
		"--version",
		"-a\x00/dev/nvme0",
		"--json\x00-l\x00sasphy\x00/dev/sdc",
		"--json=c\x00--device=nvme\x00/dev/nvme0",
	} {
		f.Add(seed, "3:fan-fail:1")
	}
	f.Fuzz(func(t *testing.T, cmdline, event string) {
		ParseEvent(event)
		args := strings.Split(cmdline, "\x00")
		var out, errb bytes.Buffer
		code := RunSmartctl(append([]string{"--state", h.StateDir()}, args...), &out, &errb)
		if code < 0 || code > 255 {
			t.Fatalf("exit status %d", code)
		}
		b := bytes.TrimSpace(out.Bytes())
		if len(b) == 0 || b[0] != '{' {
			return
		}
		var v struct {
			Smartctl struct {
				ExitStatus *int `json:"exit_status"`
			} `json:"smartctl"`
		}
		if err := json.Unmarshal(b, &v); err != nil {
			t.Fatalf("stand-in printed bad JSON for %q: %v", args, err)
		}
		if v.Smartctl.ExitStatus == nil || *v.Smartctl.ExitStatus != code {
			t.Fatalf("%q: JSON exit_status %v, returned %d", args, v.Smartctl.ExitStatus, code)
		}
	})
}
