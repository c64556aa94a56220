package relay_test

// The whole remote-access job on one machine, with real parts: a support
// engineer's request is queued at the backend (this relay, queueing through
// the reference heartbeat service), fetched by the device over a real DTLS
// heartbeat (sim/heartbeat's light client: the agent's own heartbeat client
// is engineer E's and replaces it in the daemon), decided by policy ("ask"),
// approved by a local person over the daemon's control socket, bridged over
// the relay to a real sshd that a real ssh client logs into, closed by the
// idle timeout, and all of it found in the audit log, which verifies, and in
// the copy a real rsyslogd received. Denied and unanswered requests never
// open a connection to the relay.

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dcagent/dcagent/agent/audit"
	"github.com/dcagent/dcagent/agent/config"
	"github.com/dcagent/dcagent/agent/policy"
	"github.com/dcagent/dcagent/agent/remote"
	"github.com/dcagent/dcagent/agent/status"
	"github.com/dcagent/dcagent/agent/work"
	"github.com/dcagent/dcagent/crypto/tlsconf"
	"github.com/dcagent/dcagent/internal/realparts"
	"github.com/dcagent/dcagent/internal/testpki"
	hbsim "github.com/dcagent/dcagent/sim/heartbeat"
	"github.com/dcagent/dcagent/sim/relay"
)

// TestMain lets the test binary serve as ssh's ProxyCommand:
// "proxy-helper API-URL CA-FILE SESSION" bridges stdio to the session.
func TestMain(m *testing.M) {
	if len(os.Args) == 5 && os.Args[1] == "proxy-helper" {
		pool, err := tlsconf.LoadCAFile(os.Args[3])
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		cfg, _ := tlsconf.Client(pool, nil, "127.0.0.1")
		cli := &relay.SupportClient{BaseURL: os.Args[2], HTTP: &http.Client{Transport: &http.Transport{TLSClientConfig: cfg}}}
		rwc, err := cli.Connect(context.Background(), os.Args[4], 60*time.Second)
		if err != nil {
			fmt.Fprintln(os.Stderr, "proxy-helper:", err)
			os.Exit(1)
		}
		relay.Pipe(rwc, os.Stdin, os.Stdout)
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// sshd is a real OpenSSH server on a free loopback port, with a host key
// and an authorised client key the test made.
type sshd struct {
	addr, clientKey string
}

func startSSHD(t *testing.T) *sshd {
	t.Helper()
	dir := t.TempDir()
	for _, k := range []string{"host", "client"} {
		if out, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", filepath.Join(dir, k)).CombinedOutput(); err != nil {
			t.Fatalf("ssh-keygen: %v %s", err, out)
		}
	}
	pub, _ := os.ReadFile(filepath.Join(dir, "client.pub"))
	os.WriteFile(filepath.Join(dir, "authorized_keys"), pub, 0o600)
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := ln.Addr().String()
	ln.Close()
	_, port, _ := net.SplitHostPort(addr)
	conf := filepath.Join(dir, "sshd_config")
	os.WriteFile(conf, []byte(fmt.Sprintf(`Port %s
ListenAddress 127.0.0.1
HostKey %s/host
PidFile %s/sshd.pid
AuthorizedKeysFile %s/authorized_keys
StrictModes no
UsePAM no
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
`, port, dir, dir, dir)), 0o600)
	// sshd insists on its privilege-separation folder, which Debian
	// creates only when its service starts.
	if err := os.MkdirAll("/run/sshd", 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("/usr/sbin/sshd", "-t", "-f", conf).CombinedOutput(); err != nil {
		t.Fatalf("sshd -t: %v %s", err, out)
	}
	cmd := exec.Command("/usr/sbin/sshd", "-D", "-e", "-f", conf)
	var log bytes.Buffer
	cmd.Stderr = &log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	deadline := time.Now().Add(20 * time.Second)
	for {
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("sshd does not listen on %s: %s", addr, log.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	return &sshd{addr: addr, clientKey: filepath.Join(dir, "client")}
}

// device is the agent's side: audit log streaming to rsyslog, policy,
// control socket, remote manager, and a heartbeat loop.
type device struct {
	dir    string
	log    *audit.Log
	stream *audit.Syslog
	pol    *policy.Engine
	socket *status.Server
	mgr    *remote.Manager
}

// heartbeatLoop fetches work over DTLS from the heartbeat service, hands
// each item to the remote manager, and reports results and acks.
func heartbeatLoop(t *testing.T, ctx context.Context, lc *hbsim.LightClient, handle func(work.Item) work.Result) {
	var (
		mu      sync.Mutex
		acks    []string
		results []work.Result
		seen    = map[string]bool{}
		wg      sync.WaitGroup
	)
	defer wg.Wait()
	for ctx.Err() == nil {
		h := lc.NewHeartbeat()
		mu.Lock()
		h.Acks = append([]string(nil), acks...)
		h.Results = append([]work.Result(nil), results...)
		mu.Unlock()
		reply, _, _, err := lc.Exchange(h, 2*time.Second)
		if err == nil {
			mu.Lock()
			acks = acks[len(h.Acks):]
			for _, done := range reply.Done {
				for i, r := range results {
					if r.ID == done {
						results = append(results[:i], results[i+1:]...)
						break
					}
				}
			}
			for _, it := range reply.Work {
				if seen[it.ID] {
					continue
				}
				seen[it.ID] = true
				acks = append(acks, it.ID)
				wg.Add(1)
				go func() {
					defer wg.Done()
					r := handle(it)
					mu.Lock()
					results = append(results, r)
					mu.Unlock()
				}()
			}
			mu.Unlock()
		}
		select {
		case <-ctx.Done():
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func TestEndToEndRemoteAccess(t *testing.T) {
	const systemID = "SYS-E2E-0001"
	ca := testpki.NewCA(t, "vendor CA")
	caFile := ca.WriteCAFile(t, t.TempDir())
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	// The backend: heartbeat service (DTLS), relay, support API.
	hb, err := hbsim.New(hbsim.Options{Cert: ca.Server(t), ClientCAs: ca.Pool})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { hb.Close() })
	hbAddr, err := hb.ListenUDP("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	rl, err := relay.New(relay.Options{Cert: ca.Server(t), ClientCAs: ca.Pool, Enqueue: hb.Enqueue, WaitResult: hb.WaitResult})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rl.Close() })
	api := httptest.NewUnstartedServer(rl.SupportHandler())
	api.TLS = tlsconf.Server(ca.Server(t), nil, false)
	api.StartTLS()
	t.Cleanup(api.Close)
	apiTLS, _ := tlsconf.Client(ca.Pool, nil, "127.0.0.1")
	support := &relay.SupportClient{BaseURL: api.URL, HTTP: &http.Client{Transport: &http.Transport{TLSClientConfig: apiTLS}}}

	// The customer's syslog server and the device's own sshd.
	rsys := realparts.StartRsyslog(t, nil)
	ssh := startSSHD(t)

	// The device.
	d := &device{dir: t.TempDir()}
	d.log, err = audit.Open(audit.Options{Dir: filepath.Join(d.dir, "audit")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.log.Close() })
	d.stream, err = audit.NewSyslog(d.log, audit.SyslogOptions{Addr: rsys.TCPAddr, Hostname: systemID, RetryMin: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	d.stream.Start()
	t.Cleanup(func() { d.stream.Close() })
	pfile := filepath.Join(d.dir, "policy")
	os.WriteFile(pfile, []byte("dcagent-policy 1\nversion 1\nall remote:ssh ask\n"), 0o600)
	pcfg := config.Default().Policy
	pcfg.File, pcfg.AskTimeout, pcfg.Approvers = pfile, 3*time.Second, []string{"root"}
	d.pol, err = policy.New(policy.Options{Config: pcfg, StateDir: d.dir, Audit: d.log, Device: policy.Device{Type: "server", Model: "R750", Serial: "S1"}})
	if err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(d.dir, status.SocketName)
	d.socket, err = status.Listen(status.Options{Path: sock, Approvers: pcfg.Approvers, Audit: d.log})
	if err != nil {
		t.Fatal(err)
	}
	status.RegisterApprovals(d.socket, d.pol.Approvals())
	d.socket.Start()
	t.Cleanup(func() { d.socket.Close() })
	rcfg := config.Default().Remote
	rcfg.Services = map[string]string{"ssh": ssh.addr}
	rcfg.IdleTimeout = 2 * time.Second
	devCert := ca.Device(t, systemID)
	d.mgr, err = remote.New(remote.Options{Config: rcfg, StateDir: d.dir, Policy: d.pol, Audit: d.log,
		RelayTLS: func(name string) (*tls.Config, error) { return tlsconf.Client(ca.Pool, &devCert, name) }})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.mgr.Close() })
	dcfg, err := tlsconf.DTLSClient(ca.Pool, devCert, "localhost")
	if err != nil {
		t.Fatal(err)
	}
	lc, err := hbsim.DialLight(ctx, hbAddr, dcfg, systemID)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { lc.Close() })
	loopDone := make(chan struct{})
	go func() {
		defer close(loopDone)
		heartbeatLoop(t, ctx, lc, func(it work.Item) work.Result { return d.mgr.Handle(ctx, it) })
	}()
	t.Cleanup(func() { cancel(); <-loopDone })

	// waitPending waits for the ask to reach the control socket.
	waitPending := func(sr string) policy.Pending {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for time.Now().Before(deadline) {
			var p []policy.Pending
			if err := status.Call(ctx, sock, "pending", nil, &p); err != nil {
				t.Fatal(err)
			}
			for _, x := range p {
				if x.ServiceRequest == sr {
					return x
				}
			}
			time.Sleep(50 * time.Millisecond)
		}
		t.Fatalf("request %s never waited for approval", sr)
		return policy.Pending{}
	}

	// 1. Approved: a real ssh login through the relay, closed by idle.
	rr, err := support.Request(ctx, relay.AccessRequest{SystemID: systemID, Service: "ssh", Requester: "alice@vendor", ServiceRequest: "SR-1001"})
	if err != nil {
		t.Fatal(err)
	}
	p := waitPending("SR-1001")
	if p.Action != "remote:ssh" || p.Requester != "alice@vendor" {
		t.Fatalf("pending %+v", p)
	}
	var ans status.AnswerResult
	if err := status.Call(ctx, sock, "approve", status.IDParams{ID: p.ID}, &ans); err != nil || !ans.Approved {
		t.Fatalf("approve: %v %+v", err, ans)
	}
	proxy := fmt.Sprintf("%s proxy-helper %s %s %s", os.Args[0], api.URL, caFile, rr.SessionID)
	sshCmd := exec.Command("ssh", "-F", "/dev/null", "-i", ssh.clientKey, "-o", "ProxyCommand="+proxy,
		"-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes",
		"-o", "ServerAliveInterval=0", "-o", "LogLevel=ERROR",
		"root@"+systemID, "echo logged-in-as-$(id -un); sleep 60")
	stdout, _ := sshCmd.StdoutPipe()
	var sshErr bytes.Buffer
	sshCmd.Stderr = &sshErr
	if err := sshCmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sshCmd.Process.Kill() })
	line, _ := bufio.NewReader(stdout).ReadString('\n')
	if line != "logged-in-as-root\n" {
		sshCmd.Process.Kill()
		sshCmd.Wait()
		t.Fatalf("ssh through the relay printed %q; stderr: %s", line, sshErr.String())
	}
	// Nothing more flows ("sleep 60"): the agent's idle timeout ends the
	// session, and ssh sees the connection close long before 60 s.
	waitDone := make(chan error, 1)
	go func() { waitDone <- sshCmd.Wait() }()
	select {
	case <-waitDone:
	case <-time.After(45 * time.Second):
		t.Fatal("the idle session was not closed")
	}
	rctx, rcancel := context.WithTimeout(ctx, 30*time.Second)
	res, err := hb.WaitResult(rctx, systemID, rr.WorkID)
	rcancel()
	if err != nil || !res.OK || !strings.Contains(res.Detail, "idle timeout") {
		t.Fatalf("result at the backend: %+v %v", res, err)
	}
	if s, _ := rl.Session(rr.SessionID); !s.DeviceConnected() {
		t.Fatal("the relay did not record the device's connection")
	}
	connectedSoFar := rl.Stats().Accepted

	// 2. Denied by the local person: no connection.
	rr2, err := support.Request(ctx, relay.AccessRequest{SystemID: systemID, Service: "ssh", Requester: "bob@vendor", ServiceRequest: "SR-1002"})
	if err != nil {
		t.Fatal(err)
	}
	p2 := waitPending("SR-1002")
	if err := status.Call(ctx, sock, "deny", status.IDParams{ID: p2.ID}, nil); err != nil {
		t.Fatal(err)
	}
	_, err = support.Connect(ctx, rr2.SessionID, 30*time.Second)
	var ae *relay.APIError
	if !asAPIError(err, &ae) || ae.Status != http.StatusForbidden || !strings.Contains(ae.Message, "denied by uid:0(root)") {
		t.Fatalf("engineer after a denial: %v", err)
	}

	// 3. Unanswered: denied at the ask timeout, no connection.
	rr3, err := support.Request(ctx, relay.AccessRequest{SystemID: systemID, Service: "ssh", Requester: "carol@vendor", ServiceRequest: "SR-1003"})
	if err != nil {
		t.Fatal(err)
	}
	waitPending("SR-1003")
	_, err = support.Connect(ctx, rr3.SessionID, 30*time.Second)
	if !asAPIError(err, &ae) || ae.Status != http.StatusForbidden || !strings.Contains(ae.Message, "nobody answered") {
		t.Fatalf("engineer after no answer: %v", err)
	}
	for _, id := range []string{rr2.SessionID, rr3.SessionID} {
		if s, _ := rl.Session(id); s.DeviceConnected() {
			t.Fatalf("session %s: the device connected", id)
		}
	}
	if n := rl.Stats().Accepted; n != connectedSoFar {
		t.Fatalf("the relay accepted %d connections after the approved session ended", n-connectedSoFar)
	}

	// The audit log verifies and tells the story.
	rep, err := d.log.Verify()
	if err != nil {
		t.Fatalf("audit verify: %v", err)
	}
	recs := readAudit(t, d.log.Path())
	story := []struct{ kind, field, value string }{
		{audit.KindDecision, "service_request", "SR-1001"},
		{audit.KindLocalRequest, "method", "approve"},
		{audit.KindAskAnswered, "by", "uid:0(root)"},
		{audit.KindSessionStart, "service_request", "SR-1001"},
		{audit.KindSessionEnd, "reason", "idle timeout"},
		{audit.KindLocalRequest, "method", "deny"},
		{audit.KindAskAnswered, "answer", "denied"},
		{audit.KindAskAnswered, "answer", "timeout"},
	}
	i := 0
	var end audit.Record
	for _, r := range recs {
		if i < len(story) && r.Kind == story[i].kind && r.Fields[story[i].field] == story[i].value {
			if r.Kind == audit.KindSessionEnd {
				end = r
			}
			i++
		}
	}
	if i != len(story) {
		t.Fatalf("the audit log lacks %+v (in order); it holds %d records", story[i], rep.Records)
	}
	if end.Fields["bytes_to_device"] == "0" || end.Fields["bytes_from_device"] == "0" || end.Actor != "alice@vendor" {
		t.Fatalf("session end %+v", end)
	}
	for _, r := range recs {
		if r.Kind == audit.KindSessionStart && r.Fields["service_request"] != "SR-1001" {
			t.Fatalf("a session started for %s", r.Fields["service_request"])
		}
	}

	// And the customer's rsyslog received all of it.
	last := d.log.Last().Seq
	deadline := time.Now().Add(20 * time.Second)
	for d.stream.Status().Sent < last {
		if time.Now().After(deadline) {
			t.Fatalf("syslog stream: %+v, want %d sent", d.stream.Status(), last)
		}
		time.Sleep(20 * time.Millisecond)
	}
	rsys.WaitLines(int(last), 10*time.Second)
	copyData, _ := os.ReadFile(rsys.OutFile)
	crep, err := audit.CompareWithCopy(d.log.Path(), bytes.NewReader(copyData))
	if err != nil || crep.Received != int(last) {
		t.Fatalf("rsyslog's copy: %v %+v", err, crep)
	}
	if !bytes.Contains(copyData, []byte(" remote.session.end [dcagent@32473 ")) || !bytes.Contains(copyData, []byte(`"reason":"idle timeout"`)) {
		t.Fatal("rsyslog's copy lacks the session's end")
	}
}

func asAPIError(err error, target **relay.APIError) bool {
	e, ok := err.(*relay.APIError)
	if ok {
		*target = e
	}
	return ok
}

func readAudit(t *testing.T, path string) []audit.Record {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []audit.Record
	if err := audit.Scan(f, func(_ int, r audit.Record, err error) error {
		if err != nil {
			return err
		}
		out = append(out, r)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return out
}
