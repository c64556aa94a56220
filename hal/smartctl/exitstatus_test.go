package smartctl

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dcagent/dcagent/internal/testenv"
)

func TestExitStatusBits(t *testing.T) {
	type method struct {
		name string
		get  func(ExitStatus) bool
	}
	methods := []method{
		{"CommandLineError", ExitStatus.CommandLineError},
		{"DeviceOpenFailed", ExitStatus.DeviceOpenFailed},
		{"SMARTCommandFailed", ExitStatus.SMARTCommandFailed},
		{"DiskFailing", ExitStatus.DiskFailing},
		{"PrefailAttributesNow", ExitStatus.PrefailAttributesNow},
		{"AttributesFailedInPast", ExitStatus.AttributesFailedInPast},
		{"ErrorLogHasErrors", ExitStatus.ErrorLogHasErrors},
		{"SelfTestLogHasErrors", ExitStatus.SelfTestLogHasErrors},
	}
	words := []string{"command line", "could not be opened", "command to the drive failed",
		"says it is failing", "pre-failure attribute", "in the past", "error log", "self-test log"}
	for bit := range 8 {
		e := ExitStatus(1 << bit)
		t.Run(fmt.Sprintf("bit%d", bit), func(t *testing.T) {
			for i, m := range methods {
				if got := m.get(e); got != (i == bit) {
					t.Errorf("%s() on %d = %v", m.name, e, got)
				}
			}
			d := e.Descriptions()
			if len(d) != 1 || !strings.Contains(d[0], words[bit]) {
				t.Errorf("Descriptions() = %q, want one saying %q", d, words[bit])
			}
			if want := bit <= 1; e.RunFailed() != want {
				t.Errorf("RunFailed() = %v, want %v", e.RunFailed(), want)
			}
			if want := bit >= 3; e.DiskProblem() != want {
				t.Errorf("DiskProblem() = %v, want %v", e.DiskProblem(), want)
			}
			if !strings.HasPrefix(e.String(), fmt.Sprintf("%d (", 1<<bit)) {
				t.Errorf("String() = %q", e.String())
			}
		})
	}
	if ExitStatus(0).String() != "0 (no problem found)" || len(ExitStatus(0).Descriptions()) != 0 {
		t.Errorf("zero: %q %q", ExitStatus(0).String(), ExitStatus(0).Descriptions())
	}
	e := ExitStatus(192)
	if !e.ErrorLogHasErrors() || !e.SelfTestLogHasErrors() || e.DiskFailing() || len(e.Descriptions()) != 2 {
		t.Errorf("192: %v", e.Descriptions())
	}
	if !e.Has(ExitErrorLog|ExitSelfTestLog) || e.Has(ExitErrorLog|ExitDiskFailing) {
		t.Error("Has")
	}
}

func TestSnapshotExitStatus(t *testing.T) {
	for _, c := range []struct {
		in   *int
		want ExitStatus
		ok   bool
	}{{nil, 0, false}, {ptrInt(-1), 0, false}, {ptrInt(256), 0, false}, {ptrInt(0), 0, true}, {ptrInt(36), 36, true}} {
		got, ok := SnapshotExitStatus(c.in)
		if got != c.want || ok != c.ok {
			t.Errorf("SnapshotExitStatus(%v) = %d, %v", c.in, got, ok)
		}
	}
}

// withExitStatus returns a real JSON capture with its exit_status replaced.
func withExitStatus(t *testing.T, capture string, status int) []byte {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(testenv.SharedTestdata(t), "smart", capture))
	if err != nil {
		t.Fatal(err)
	}
	old := []byte(`"exit_status": 0`)
	if bytes.Count(data, old) != 1 {
		t.Fatalf("%s does not have exactly one %s", capture, old)
	}
	return bytes.Replace(data, old, fmt.Appendf(nil, `"exit_status": %d`, status), 1)
}

// Every bit, and a combination, is kept in the snapshot of a report that
// has device data, and does not cost the data.
func TestJSONExitStatusKeptWithData(t *testing.T) {
	for _, status := range []int{1, 2, 4, 8, 16, 32, 64, 128, 7, 255} {
		t.Run(fmt.Sprint(status), func(t *testing.T) {
			s, err := Parse(withExitStatus(t, "json/libblockdev/HGST_HUS726060ALA640.json", status))
			if err != nil {
				t.Fatal(err)
			}
			if s.ExitStatus == nil || *s.ExitStatus != status {
				t.Fatalf("ExitStatus = %v, want %d", s.ExitStatus, status)
			}
			if s.Model != "HGST HUS726060ALA640" || s.Counters.ReallocatedSectors == nil || *s.Counters.ReallocatedSectors != 1040 {
				t.Errorf("device data lost with exit status %d: %+v", status, s)
			}
		})
	}
}

// Bits 0 and 1 without device data are a clear error, carrying the bits.
func TestJSONRunFailedWithoutData(t *testing.T) {
	for _, status := range []int{1, 2, 3} {
		doc := fmt.Sprintf(`{"json_format_version":[1,0],"smartctl":{"version":[7,4],"exit_status":%d,
			"messages":[{"string":"Smartctl open device: /dev/sdz failed: No such device","severity":"error"}]}}`, status)
		_, err := Parse([]byte(doc))
		var nd *NoDataError
		if !errors.As(err, &nd) || !errors.Is(err, ErrNoDeviceData) {
			t.Fatalf("status %d: want NoDataError, got %v", status, err)
		}
		if nd.ExitStatus == nil || int(*nd.ExitStatus) != status || !nd.ExitStatus.RunFailed() {
			t.Errorf("status %d: NoDataError.ExitStatus = %v", status, nd.ExitStatus)
		}
		if !strings.Contains(err.Error(), "No such device") || !strings.Contains(err.Error(), fmt.Sprintf("exit status %d", status)) {
			t.Errorf("status %d: error %q does not carry smartctl's message and status", status, err)
		}
	}
}

func TestJSONExitStatusOutOfRange(t *testing.T) {
	s, err := Parse(withExitStatus(t, "json/libblockdev/HGST_HUS726060ALA640.json", 300))
	if err != nil {
		t.Fatal(err)
	}
	if s.ExitStatus != nil {
		t.Errorf("exit status 300 kept: %d", *s.ExitStatus)
	}
	if !hasMessage(s.Messages, "exit_status 300") {
		t.Errorf("no note about exit status 300 in %q", s.Messages)
	}
}

func hasMessage(msgs []string, sub string) bool {
	for _, m := range msgs {
		if strings.Contains(m, sub) {
			return true
		}
	}
	return false
}
