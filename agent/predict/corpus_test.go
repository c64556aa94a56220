package predict_test

import (
	"fmt"
	"io/fs"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/dcagent/dcagent/agent/predict"
	"github.com/dcagent/dcagent/hal"
	"github.com/dcagent/dcagent/hal/smartctl"
	"github.com/dcagent/dcagent/internal/testenv"
)

// corpusDrive is one capture of the shared corpus and its verdict.
type corpusDrive struct {
	path string
	snap *hal.DriveSnapshot
	risk predict.Risk
}

// readCorpus parses every capture under smart/ with the agent's own
// smartctl parser. Files that hold no drive (scan output, smartctl's own
// errors, the edited edge cases that are not reports) are counted apart.
func readCorpus(t *testing.T) (drives []corpusDrive, skipped map[string]string) {
	root := filepath.Join(testenv.SharedTestdata(t), "smart")
	skipped = map[string]string{}
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() || strings.HasSuffix(path, ".md") || strings.HasSuffix(path, ".license") {
			return nil
		}
		rel, _ := filepath.Rel(root, path)
		snap, err := smartctl.ParseFile(path)
		if err != nil {
			skipped[rel] = err.Error()
			return nil
		}
		drives = append(drives, corpusDrive{path: rel, snap: snap, risk: predict.Assess(*snap)})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Slice(drives, func(i, j int) bool { return drives[i].path < drives[j].path })
	return drives, skipped
}

// reportsTrouble says whether the drive itself reports failing health or
// failing attributes: its verdict, a failing or failed attribute, or
// smartctl's exit bits 3 to 5 (failing, prefail attributes at threshold,
// attributes at threshold in the past).
func reportsTrouble(s *hal.DriveSnapshot) (bool, string) {
	var why []string
	if s.SmartPassed != nil && !*s.SmartPassed {
		why = append(why, "health FAILED")
	}
	for _, a := range s.FailingAttributes {
		why = append(why, fmt.Sprintf("attribute %d %s %s", a.ID, a.Name, a.When))
	}
	if s.ExitStatus != nil && *s.ExitStatus&(1<<3|1<<4|1<<5) != 0 {
		why = append(why, fmt.Sprintf("exit status %d", *s.ExitStatus))
	}
	return len(why) > 0, strings.Join(why, ", ")
}

// TestCorpus: on every real capture in the shared corpus, a drive that
// reports failing health or failing attributes is at warn or fail. The
// log shows the level distribution and, for each drive whose own verdict
// is PASSED (or absent) but which is not at ok, the reasons.
func TestCorpus(t *testing.T) {
	drives, skipped := readCorpus(t)
	if len(drives) < 80 {
		t.Fatalf("only %d captures parsed; the corpus has well over a hundred", len(drives))
	}
	dist := map[predict.Level]int{}
	troubled := 0
	var notOK, bad []string
	for _, d := range drives {
		dist[d.risk.Level]++
		reports, why := reportsTrouble(d.snap)
		if reports {
			troubled++
			bad = append(bad, fmt.Sprintf("%-5s %s (%s): %s", d.risk.Level, d.path, why, firstReason(d.risk)))
			if d.risk.Level < predict.LevelWarn {
				t.Errorf("%s: the drive reports %s, yet its risk is %s (%q)", d.path, why, d.risk.Level, d.risk.Reasons)
			}
			continue
		}
		if d.risk.Level != predict.LevelOK {
			notOK = append(notOK, fmt.Sprintf("%-5s %s (%s %s): %s", d.risk.Level, d.path, d.snap.Model, d.snap.Serial, strings.Join(d.risk.Reasons, "; ")))
		}
	}
	t.Logf("%d captures judged, %d files hold no drive report", len(drives), len(skipped))
	t.Logf("level distribution: ok %d, watch %d, warn %d, fail %d", dist[predict.LevelOK], dist[predict.LevelWatch], dist[predict.LevelWarn], dist[predict.LevelFail])
	t.Logf("%d captures report failing health or attributes, all at warn or fail:\n%s", troubled, strings.Join(bad, "\n"))
	t.Logf("drives whose own verdict is not FAILED but which are not at ok (%d):\n%s", len(notOK), strings.Join(notOK, "\n"))
	if troubled < 10 {
		t.Errorf("only %d captures report trouble; PROVENANCE.md describes more failing drives", troubled)
	}
	var names []string
	for k, v := range skipped {
		names = append(names, k+": "+firstLine(v))
	}
	sort.Strings(names)
	t.Logf("files without a drive report:\n%s", strings.Join(names, "\n"))
}

func firstReason(r predict.Risk) string {
	if len(r.Reasons) == 0 {
		return ""
	}
	return r.Reasons[0]
}

func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}

// TestCorpusKnownFailing pins the verdict on the failing drives that
// PROVENANCE.md describes, including those whose own verdict is PASSED.
func TestCorpusKnownFailing(t *testing.T) {
	drives, _ := readCorpus(t)
	find := func(substr string) *corpusDrive {
		for i := range drives {
			if strings.Contains(drives[i].path, substr) {
				return &drives[i]
			}
		}
		return nil
	}
	for _, c := range []struct {
		file   string
		level  predict.Level
		reason string
	}{
		{"HGST_HUS726060ALA640", predict.LevelFail, "sectors pending reallocation"},
		{"failing-sectors-passing-status", predict.LevelFail, "1640 sectors pending reallocation"},
		{"failed-test-2.txt", predict.LevelFail, "SMART overall health FAILED"},
		{"failed-test-failing_now.txt", predict.LevelFail, "End-to-End_Error is at or below its failure threshold now"},
	} {
		d := find(c.file)
		if d == nil {
			t.Errorf("%s: not in the corpus", c.file)
			continue
		}
		if d.risk.Level != c.level {
			t.Errorf("%s: level %s, want %s (%q)", d.path, d.risk.Level, c.level, d.risk.Reasons)
		}
		found := false
		for _, r := range d.risk.Reasons {
			found = found || strings.Contains(r, c.reason)
		}
		if !found {
			t.Errorf("%s: no reason mentions %q: %q", d.path, c.reason, d.risk.Reasons)
		}
	}
}

// TestCorpusSeries: two real captures of one NVMe drive minutes apart
// judged as a series give the same verdict as the later one alone when
// nothing grew.
func TestCorpusSeries(t *testing.T) {
	drives, _ := readCorpus(t)
	var series []hal.DriveSnapshot
	for _, d := range drives {
		if strings.Contains(d.path, "nvme_win10_mingw32_0_issue_48") {
			series = append(series, *d.snap)
		}
	}
	if len(series) != 2 {
		t.Fatalf("%d captures of the issue-48 drive, want 2", len(series))
	}
	sort.Slice(series, func(i, j int) bool { return series[i].Time.Before(series[j].Time) })
	got := predict.AssessSeries(series)
	alone := predict.Assess(series[1])
	if got.Level != alone.Level {
		t.Errorf("series %s %q, last capture alone %s %q", got.Level, got.Reasons, alone.Level, alone.Reasons)
	}
}
