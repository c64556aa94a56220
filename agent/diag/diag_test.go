package diag

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"
)

func TestRunCollectsWorstFirst(t *testing.T) {
	checks := []Check{
		{Name: "fine", Run: func(context.Context) []Finding { return []Finding{{Status: OK, Message: "all good"}} }},
		{Name: "quiet", Run: func(context.Context) []Finding { return nil }},
		{Name: "meh", Run: func(context.Context) []Finding {
			return []Finding{{Status: Warn, Subject: "thing", Message: "a bit off", Action: "look at it"}}
		}},
		{Name: "bad", Run: func(context.Context) []Finding {
			return []Finding{{Status: Fail, Message: "broken", Action: "fix it"}, {Message: "no status means ok"}}
		}},
		{Name: "panics", Run: func(context.Context) []Finding { panic("boom") }},
		{Name: "hangs", Run: func(ctx context.Context) []Finding { <-ctx.Done(); time.Sleep(50 * time.Millisecond); return nil }},
	}
	r := Run(context.Background(), checks, 200*time.Millisecond)
	if r.Status != Fail || r.ExitStatus() != 1 {
		t.Errorf("status %s exit %d", r.Status, r.ExitStatus())
	}
	var order []string
	for _, f := range r.Findings {
		order = append(order, f.Check+":"+string(f.Status))
	}
	want := "bad:fail panics:fail hangs:fail meh:warn fine:ok quiet:ok bad:ok"
	if got := strings.Join(order, " "); got != want {
		t.Errorf("order = %s\nwant    %s", got, want)
	}
	if ok, warn, fail := r.Counts(); ok != 3 || warn != 1 || fail != 3 {
		t.Errorf("counts = %d %d %d", ok, warn, fail)
	}
	for _, f := range r.Findings {
		switch f.Check {
		case "panics":
			if !strings.Contains(f.Message, "panic: boom") {
				t.Errorf("panic finding = %+v", f)
			}
		case "hangs":
			if !strings.Contains(f.Message, "did not finish within 200ms") || f.Action == "" {
				t.Errorf("hang finding = %+v", f)
			}
		case "quiet":
			if f.Message != "nothing wrong found" {
				t.Errorf("quiet finding = %+v", f)
			}
		}
	}
}

func TestReportOK(t *testing.T) {
	r := Run(context.Background(), []Check{{Name: "a", Run: func(context.Context) []Finding { return []Finding{{Message: "fine"}} }}}, 0)
	r.Note("the network checks were skipped")
	if r.Status != OK || r.ExitStatus() != 0 {
		t.Errorf("status %s", r.Status)
	}
	var b bytes.Buffer
	r.WriteText(&b)
	if !strings.HasPrefix(b.String(), "dcagent diag: all is well (1 finding)\n") || !strings.Contains(b.String(), "note: the network checks were skipped") {
		t.Errorf("text:\n%s", b.String())
	}
	// Warnings alone do not fail the run.
	r = Run(context.Background(), []Check{{Name: "a", Run: func(context.Context) []Finding { return []Finding{{Status: Warn, Message: "hm"}} }}}, 0)
	if r.ExitStatus() != 0 || r.Status != Warn {
		t.Errorf("warn-only run: status %s exit %d", r.Status, r.ExitStatus())
	}
}

func TestReportRendering(t *testing.T) {
	r := &Report{Status: Fail, Findings: []Finding{
		{Check: "drives", Status: Fail, Subject: "/dev/sdb (slot 1)", Message: "SMART verdict FAILED", Action: "Replace it."},
		{Check: "sensors", Status: Warn, Message: "no sensors", Action: "Load drivers."},
		{Check: "enclosures", Status: OK, Message: "fine"},
	}}
	var b bytes.Buffer
	if err := r.WriteText(&b); err != nil {
		t.Fatal(err)
	}
	want := `dcagent diag: 1 problem, 1 warning (3 findings)

FAIL  drives      /dev/sdb (slot 1)
                  SMART verdict FAILED
                  What to do: Replace it.

WARN  sensors     no sensors
                  What to do: Load drivers.

ok    enclosures  fine
`
	if b.String() != want {
		t.Errorf("text =\n%s\nwant\n%s", b.String(), want)
	}
	b.Reset()
	if err := r.WriteJSON(&b); err != nil {
		t.Fatal(err)
	}
	var back Report
	if err := json.Unmarshal(b.Bytes(), &back); err != nil {
		t.Fatal(err)
	}
	if back.Status != Fail || len(back.Findings) != 3 || back.Findings[0].Subject != "/dev/sdb (slot 1)" || back.Findings[2].Action != "" {
		t.Errorf("JSON round trip = %+v", back)
	}
	for _, key := range []string{`"check"`, `"status"`, `"subject"`, `"message"`, `"action"`, `"findings"`} {
		if !bytes.Contains(b.Bytes(), []byte(key)) {
			t.Errorf("JSON lacks %s", key)
		}
	}
	b.Reset()
	(&Report{Status: OK}).WriteJSON(&b)
	if !strings.Contains(b.String(), `"findings": []`) {
		t.Errorf("empty report JSON = %s", b.String())
	}
}

func TestWorse(t *testing.T) {
	if Worse(OK, Warn) != Warn || Worse(Fail, Warn) != Fail || Worse(OK, OK) != OK {
		t.Error("Worse is wrong")
	}
}
