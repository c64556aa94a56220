package demo

import (
	"context"
	"errors"
	"fmt"
	"io"

	"strings"
	"sync"
	"time"

	"github.com/dcagent/dcagent/agent/event"
	halsim "github.com/dcagent/dcagent/hal/sim"
	"github.com/dcagent/dcagent/sim/cases"
	hbsvc "github.com/dcagent/dcagent/sim/heartbeat"
	"github.com/dcagent/dcagent/sim/relay"
)

// Options shape the demo.
type Options struct {
	LabOptions
	// Timeout bounds the whole demo; 0 means 110 s.
	Timeout time.Duration
}

// narrator prints numbered, timed lines.
type narrator struct {
	mu    sync.Mutex
	w     io.Writer
	start time.Time
}

func (n *narrator) say(format string, args ...any) {
	n.mu.Lock()
	defer n.mu.Unlock()
	fmt.Fprintf(n.w, "[%5.1fs] %s\n", time.Since(n.start).Seconds(), fmt.Sprintf(format, args...))
}

func (n *narrator) block(text string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	fmt.Fprint(n.w, indent(text, "          | "))
}

// Run runs the demo, narrating to w. It returns an error, with the agent's
// log, when a step does not happen in time.
func Run(ctx context.Context, o Options, w io.Writer) (err error) {
	if o.Timeout == 0 {
		o.Timeout = 110 * time.Second
	}
	if o.Degrade == "" {
		o.Degrade = "1"
	}
	parent := ctx
	ctx, cancel := context.WithTimeout(ctx, o.Timeout)
	defer cancel()
	n := &narrator{w: w, start: time.Now()}

	n.say("dcagent demo: the agent, a software TPM, the vendor's backend and a simulated server, all on this machine.")
	captures := o.Captures
	if captures == "" {
		captures = halsim.DefaultCaptures()
	}
	if captures == "" || captures == "none" {
		n.say("No captured SMART data found (../shared/testdata, or --captures DIR): the simulator makes its drives up.")
		o.Captures = "none"
	} else {
		n.say("Drives replay real smartctl captures from %s.", captures)
		o.Captures = captures
	}

	lab, err := NewLab(ctx, o.LabOptions)
	if err != nil {
		return err
	}
	defer func() {
		if err != nil && parent.Err() != nil {
			fmt.Fprintf(w, "\nThe demo was interrupted; cleaning up.\n")
		} else if err != nil {
			fmt.Fprintf(w, "\nThe demo stopped: %v\nThe agent's log:\n%s", err, indent(lab.AgentLog(), "  "))
			if o.Keep {
				fmt.Fprintf(w, "The lab is kept in %s\n", lab.Dir)
			}
		}
		lab.Close()
	}()
	n.say("Started a software TPM (swtpm, with an endorsement key certificate from a stand-in TPM maker) at %s.", lab.TPM.Addr())
	n.say("Started the reference backend: HTTPS %s, DTLS heartbeats on UDP %s, remote-access relay %s.", lab.Backend.URL(), lab.Backend.HeartbeatAddr(), lab.Backend.Relay.Addr())
	var summary strings.Builder
	lab.Hardware.WriteSummary(&summary)
	n.say("Built the simulated server the agent will read through sysfs and smartctl:")
	n.block(summary.String())

	// Watchers on the backend, before the agent starts.
	beats, stopBeats := lab.Backend.Heartbeat.Subscribe(64)
	defer stopBeats()
	arrivals, stopArrivals := lab.Backend.Events.Subscribe(256)
	defer stopArrivals()
	caseOpened := make(chan cases.Case, 4)
	lab.Backend.Cases.OnOpen(func(c cases.Case) {
		select {
		case caseOpened <- c:
		default:
		}
	})

	// Enrollment.
	n.say("Enrolling: the agent makes its key inside the TPM, the TPM certifies it, and the backend's CA issues a certificate for a one-time token.")
	out, err := lab.Enroll(ctx)
	if err != nil {
		return fmt.Errorf("%v\n%s", err, out)
	}
	n.block(out)
	keyOut, err := lab.Agent(ctx, "key", "show")
	if err == nil {
		n.say("The key never leaves the TPM; what the agent can show of it:")
		n.block(keyOut)
	}

	if err := lab.StartAgent(); err != nil {
		return err
	}
	n.say("Started the daemon: dcagent --config %s run (its log: %s/agent.log).", lab.Config, lab.Dir)
	lab.RunHardware(func(step int, changes []halsim.Change) {
		for _, c := range changes {
			if strings.Contains(c.Subject, "sd") || strings.Contains(c.Subject, "nvme") {
				n.say("hardware: %s: %s", c.Subject, c.What)
			}
		}
	})
	n.say("The simulated drive in slot %s now starts to wear out, one step every %s.", o.Degrade, lab.opts.Tick)

	// Follow the story until a case is open.
	heartbeatsShown := 0
	var opened *cases.Case
	for opened == nil {
		select {
		case <-ctx.Done():
			return errors.New("no case was opened in time")
		case s := <-beats:
			heartbeatsShown++
			if heartbeatsShown <= 2 || heartbeatsShown%10 == 0 {
				n.say("backend: heartbeat %d from %s over %s%s", heartbeatsShown, s.SystemID, strings.ToUpper(string(s.Channel)), telemetryWords(s))
			}
		case r := <-arrivals:
			if line := eventWords(r); line != "" {
				n.say("backend: %s", line)
			}
		case c := <-caseOpened:
			opened = &c
		}
	}
	n.say("backend: CASE OPENED %s", caseLine(*opened))

	// Remote access.
	n.say("A support engineer asks for a remote session to the device's web console for this case.")
	sess, err := lab.Backend.Relay.RequestAccess(relay.AccessRequest{SystemID: lab.SystemID, Service: "console", Requester: "alice@vendor (support)", ServiceRequest: opened.ID})
	if err != nil {
		return err
	}
	n.say("backend: request %s queued; the next heartbeat reply carries it to the device (the device accepts no connection).", sess.WorkID)
	pendingID, err := waitPending(ctx, lab, opened.ID)
	if err != nil {
		return err
	}
	n.say("device: the customer's policy says \"ask\": the request waits for a person on site (dcagent pending shows %s).", pendingID)
	out, err = lab.Agent(ctx, "approve", pendingID)
	if err != nil {
		return fmt.Errorf("dcagent approve: %v: %s", err, out)
	}
	n.say("A local administrator runs: dcagent approve %s", pendingID)
	n.block(out)
	conn, err := lab.Backend.Relay.AwaitDevice(ctx, sess)
	if err != nil {
		return fmt.Errorf("the device did not connect to the relay: %w", err)
	}
	n.say("relay: the device dialled out over TLS with its TPM-held key; bridging the engineer to the web console.")
	conn.SetDeadline(time.Now().Add(15 * time.Second))
	fmt.Fprintf(conn, "GET / HTTP/1.0\r\nHost: console\r\n\r\n")
	page, _ := io.ReadAll(conn)
	conn.Close()
	n.say("engineer sees:")
	n.block(strings.TrimSpace(string(page)))
	if err := waitSessionEnd(ctx, lab); err != nil {
		return err
	}
	n.say("device: the session is closed (the console ended it); the audit log holds who, what and how many bytes.")
	out, _ = lab.Agent(ctx, "audit", "show", "--kind", "remote")
	n.block(out)

	out, err = lab.Agent(ctx, "status")
	if err != nil {
		return fmt.Errorf("dcagent status: %v: %s", err, out)
	}
	n.say("dcagent status, as a support engineer on site would see it:")
	n.block(out)

	n.say("Stopping the daemon with SIGTERM.")
	if err := lab.StopAgent(); err != nil {
		return err
	}
	out, err = lab.Agent(ctx, "audit", "verify")
	if err != nil {
		return fmt.Errorf("dcagent audit verify failed: %v\n%s", err, out)
	}
	n.say("dcagent audit verify:")
	n.block(out)
	n.say("Done in %.0f s: enrolled with a TPM key, heartbeats, a failing drive predicted, the alert home, a case with a part, a remote session approved and closed, and an audit log that verifies.", time.Since(n.start).Seconds())
	if o.Keep {
		n.say("The lab is kept in %s", lab.Dir)
	}
	return nil
}

func telemetryWords(s hbsvc.Seen) string {
	t := s.Telemetry
	if t == nil {
		return ""
	}
	if t.DrivesOK+t.DrivesWatch+t.DrivesWarn+t.DrivesFail == 0 {
		return fmt.Sprintf(" (the drives are not read yet; %d events waiting to be sent)", t.SpoolBacklog)
	}
	return fmt.Sprintf(" (drives ok %d, watch %d, warn %d, fail %d; %d events waiting to be sent)", t.DrivesOK, t.DrivesWatch, t.DrivesWarn, t.DrivesFail, t.SpoolBacklog)
}

// eventWords describes an event that arrived at the backend; "" for the
// ones not worth a line.
func eventWords(r interface{ Event() (*event.Event, error) }) string {
	ev, err := r.Event()
	if err != nil {
		return ""
	}
	switch ev.Type {
	case event.TypeHealthReport:
		return fmt.Sprintf("full health report %s arrived from %s", ev.ID, ev.SystemID)
	case event.TypeAlert:
		msg, _ := ev.Payload["message"].(string)
		cond, _ := ev.Payload["condition"].(string)
		if cond != "drive_risk" && cond != "link_errors" && cond != "drive_replaced" {
			return ""
		}
		line := fmt.Sprintf("ALERT %s from %s: %s", ev.ID, ev.SystemID, msg)
		if d, ok := ev.Payload["drive"].(map[string]any); ok {
			if rs, ok := d["reasons"].([]any); ok {
				for _, r := range rs {
					if text, _ := r.(string); text != "" && strings.Contains(msg, text) {
						continue // the headline says it already
					}
					line += fmt.Sprintf("\n          |   because %v", r)
				}
			}
		}
		return line
	}
	return ""
}

func waitPending(ctx context.Context, lab *Lab, sr string) (string, error) {
	for {
		p, err := lab.Pending(ctx)
		if err == nil {
			for _, q := range p {
				if q.ServiceRequest == sr {
					return q.ID, nil
				}
			}
		}
		select {
		case <-ctx.Done():
			if err != nil {
				return "", fmt.Errorf("the request never reached the device's approval queue (last error: %v)", err)
			}
			return "", errors.New("the request never reached the device's approval queue")
		case <-time.After(300 * time.Millisecond):
		}
	}
}

func waitSessionEnd(ctx context.Context, lab *Lab) error {
	for {
		out, err := lab.Agent(ctx, "audit", "show", "--kind", "remote.session.end", "--json")
		if err == nil && strings.Contains(out, "remote.session.end") {
			return nil
		}
		select {
		case <-ctx.Done():
			return errors.New("the device never recorded the end of the session")
		case <-time.After(300 * time.Millisecond):
		}
	}
}
