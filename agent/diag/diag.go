// Package diag is the framework of `dcagent diag`: checks that look at one
// part of the device or the agent on the spot and say, in plain words, what
// they found and what to do about it.
//
// A check is one function from a context to findings (Check.Run). Adding a
// check means writing that function and putting it in the list given to
// Run; the hardware checks in this package (sensors, enclosures, drives) are
// built that way, and the agent's other parts add theirs the same way.
//
// A finding's status is ok, warn or fail. Run gives each check a time limit
// and survives a check that panics or hangs (that check's finding says so),
// so one broken check never hides the others. A report is printed as text
// for a person or as JSON for a program, and its exit status is 1 when any
// finding failed.
package diag

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strings"
	"sync"
	"time"
)

// Status is how bad a finding is.
type Status string

const (
	OK   Status = "ok"
	Warn Status = "warn"
	Fail Status = "fail"
)

func (s Status) rank() int {
	switch s {
	case Fail:
		return 2
	case Warn:
		return 1
	}
	return 0
}

// Worse returns the worse of two statuses.
func Worse(a, b Status) Status {
	if b.rank() > a.rank() {
		return b
	}
	return a
}

// Finding is one thing a check found.
type Finding struct {
	// Check is the name of the check that found it.
	Check  string `json:"check"`
	Status Status `json:"status"`
	// Subject is what the finding is about ("/dev/sdb (slot 1)",
	// "nct6779 fan2"); "" when it is about the check's area as a whole.
	Subject string `json:"subject,omitempty"`
	// Message says what was found, in plain words.
	Message string `json:"message"`
	// Action says what to do; empty for ok findings.
	Action string `json:"action,omitempty"`
}

// Check is one diagnostic check.
type Check struct {
	// Name is short and stable ("sensors", "drives", "config"): scripts
	// select findings by it.
	Name string
	// Run looks and reports. It should honour ctx and return at least one
	// finding; returning none is read as "nothing wrong".
	Run func(ctx context.Context) []Finding
}

// Report is the outcome of a diagnostic run.
type Report struct {
	// Status is the worst status of any finding.
	Status   Status    `json:"status"`
	Findings []Finding `json:"findings"`
	// Notes are remarks about the run itself (what was not checked).
	Notes []string `json:"notes,omitempty"`
}

// DefaultTimeout bounds each check when Run is given none.
const DefaultTimeout = 2 * time.Minute

// Run runs the checks concurrently, each with its own time limit, and
// collects their findings: worst first, then in the order of the checks.
func Run(ctx context.Context, checks []Check, timeout time.Duration) *Report {
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	results := make([][]Finding, len(checks))
	var wg sync.WaitGroup
	for i, c := range checks {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i] = runOne(ctx, c, timeout)
		}()
	}
	wg.Wait()
	r := &Report{Status: OK}
	for _, fs := range results {
		r.Findings = append(r.Findings, fs...)
	}
	sort.SliceStable(r.Findings, func(i, j int) bool {
		return r.Findings[i].Status.rank() > r.Findings[j].Status.rank()
	})
	for _, f := range r.Findings {
		r.Status = Worse(r.Status, f.Status)
	}
	return r
}

// runOne runs a check with a time limit, turning a panic or a hang into a
// failed finding.
func runOne(ctx context.Context, c Check, timeout time.Duration) []Finding {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	done := make(chan []Finding, 1)
	go func() {
		defer func() {
			if p := recover(); p != nil {
				done <- []Finding{{Check: c.Name, Status: Fail, Message: fmt.Sprintf("the check itself failed (panic: %v)", p),
					Action: "This is a bug in dcagent; report it with this output."}}
			}
		}()
		done <- c.Run(ctx)
	}()
	select {
	case fs := <-done:
		if len(fs) == 0 {
			return []Finding{{Check: c.Name, Status: OK, Message: "nothing wrong found"}}
		}
		for i := range fs {
			if fs[i].Check == "" {
				fs[i].Check = c.Name
			}
			if fs[i].Status == "" {
				fs[i].Status = OK
			}
		}
		return fs
	case <-ctx.Done():
		// The check goroutine is left to finish on its own; it holds only
		// its own resources and its result is dropped.
		why := fmt.Sprintf("the check did not finish within %s", timeout)
		if ctx.Err() == context.Canceled {
			why = "the check was stopped before it finished"
		}
		return []Finding{{Check: c.Name, Status: Fail, Message: why,
			Action: "Something it talks to is not answering (a hung drive, a stuck bus); run the check again, and look at the kernel log (dmesg)."}}
	}
}

// Note adds a remark about the run.
func (r *Report) Note(format string, args ...any) {
	r.Notes = append(r.Notes, fmt.Sprintf(format, args...))
}

// Counts returns how many findings have each status.
func (r *Report) Counts() (ok, warn, fail int) {
	for _, f := range r.Findings {
		switch f.Status {
		case Fail:
			fail++
		case Warn:
			warn++
		default:
			ok++
		}
	}
	return
}

// ExitStatus is the process exit status for the report: 1 when any
// finding failed, 0 otherwise.
func (r *Report) ExitStatus() int {
	if r.Status == Fail {
		return 1
	}
	return 0
}

// WriteJSON prints the report as one JSON object.
func (r *Report) WriteJSON(w io.Writer) error {
	out := *r
	if out.Findings == nil {
		out.Findings = []Finding{}
	}
	b, err := json.MarshalIndent(out, "", "  ")
	if err != nil {
		return err
	}
	_, err = w.Write(append(b, '\n'))
	return err
}

// WriteText prints the report for a person: a summary line, then each
// finding, problems first, with what to do.
func (r *Report) WriteText(w io.Writer) error {
	ok, warn, fail := r.Counts()
	var head []string
	if fail > 0 {
		head = append(head, plural(fail, "problem", "problems"))
	}
	if warn > 0 {
		head = append(head, plural(warn, "warning", "warnings"))
	}
	summary := "all is well"
	if len(head) > 0 {
		summary = strings.Join(head, ", ")
	}
	var b strings.Builder
	fmt.Fprintf(&b, "dcagent diag: %s (%s)\n", summary, plural(ok+warn+fail, "finding", "findings"))
	width := 0
	for _, f := range r.Findings {
		width = max(width, len(f.Check))
	}
	indent := strings.Repeat(" ", 6+width+2)
	for _, f := range r.Findings {
		label := map[Status]string{OK: "ok", Warn: "WARN", Fail: "FAIL"}[f.Status]
		b.WriteByte('\n')
		first := f.Message
		if f.Subject != "" {
			first = f.Subject
		}
		fmt.Fprintf(&b, "%-4s  %-*s  %s\n", label, width, f.Check, first)
		if f.Subject != "" {
			fmt.Fprintf(&b, "%s%s\n", indent, f.Message)
		}
		if f.Action != "" {
			fmt.Fprintf(&b, "%sWhat to do: %s\n", indent, f.Action)
		}
	}
	for _, n := range r.Notes {
		fmt.Fprintf(&b, "\nnote: %s\n", n)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func plural(n int, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return fmt.Sprintf("%d %s", n, many)
}
