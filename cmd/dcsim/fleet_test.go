package main

import (
	"bytes"
	"encoding/json"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/dcagent/dcagent/crypto/enroll"
	"github.com/dcagent/dcagent/sim/ca"
	hbsvc "github.com/dcagent/dcagent/sim/heartbeat"
)

func TestFleetWithItsOwnBackend(t *testing.T) {
	var out, errb bytes.Buffer
	code := runMain([]string{"fleet", "--agents", "4", "--interval", "200ms", "--duration", "1500ms",
		"--report", "0", "--work-every", "100ms", "--json"}, &out, &errb)
	if code != 0 {
		t.Fatalf("exit %d\nstdout: %s\nstderr: %s", code, out.String(), errb.String())
	}
	var s FleetSummary
	if err := json.Unmarshal(out.Bytes(), &s); err != nil {
		t.Fatalf("%v: %s", err, out.String())
	}
	if s.Agents != 4 || s.Enrolled != 4 || s.Answering != 4 || s.OnDTLS != 4 || s.Handshakes != 4 || s.KeyKind != "file" {
		t.Fatalf("summary %+v", s)
	}
	if s.WorkQueued == 0 || s.WorkDone == 0 || s.ServiceHeartbeats < 4 {
		t.Fatalf("no work or heartbeats: %+v", s)
	}
	if !strings.Contains(errb.String(), "development only") {
		t.Fatalf("the file keys are not labelled: %s", errb.String())
	}
}

// TestFleetAgainstARunningBackend runs the fleet against a backend
// started apart (the CA, the heartbeat service, HTTPS), minting tokens in
// its state directory.
func TestFleetAgainstARunningBackend(t *testing.T) {
	state := t.TempDir()
	authority, err := ca.Open(ca.Config{Dir: ca.DirIn(state)})
	if err != nil {
		t.Fatal(err)
	}
	svc, err := hbsvc.New(hbsvc.Options{Cert: authority.ServerCertificate(), ClientCAs: authority.Pool(),
		AuthenticateCert: authority.AuthenticateCert, Authenticate: authority.Authenticate})
	if err != nil {
		t.Fatal(err)
	}
	defer svc.Close()
	udp, err := svc.ListenUDP("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle(enroll.PathEnroll, authority.Handler())
	mux.Handle(hbsvc.HTTPSPath, svc.Handler())
	srv := &http.Server{Handler: mux, TLSConfig: authority.ServerTLSConfig(), ReadHeaderTimeout: 10 * time.Second}
	go srv.ServeTLS(ln, "", "")
	defer srv.Close()

	var out, errb bytes.Buffer
	code := runMain([]string{"fleet", "--agents", "3", "--interval", "200ms", "--duration", "1s", "--report", "0",
		"--backend-url", "https://" + ln.Addr().String(), "--backend-udp", udp.String(), "--state", state}, &out, &errb)
	if code != 0 {
		t.Fatalf("exit %d\nstdout: %s\nstderr: %s", code, out.String(), errb.String())
	}
	devs := svc.Devices()
	if len(devs) != 3 {
		t.Fatalf("the backend heard %d devices", len(devs))
	}
	for _, d := range devs {
		if d.Heartbeats == 0 || d.Telemetry == nil || d.Telemetry.DrivesOK+d.Telemetry.DrivesWatch+d.Telemetry.DrivesWarn+d.Telemetry.DrivesFail == 0 {
			t.Fatalf("device %+v", d)
		}
	}
	if !strings.Contains(out.String(), "3 answering (3 dtls") {
		t.Fatalf("summary: %s", out.String())
	}
}

func TestFleetRefusesBadFlags(t *testing.T) {
	for _, args := range [][]string{
		{"--agents", "0"},
		{"--interval", "1ms"},
		{"--backend-url", "https://127.0.0.1:1"},
		{"--state", "/tmp/x"},
		{"--interval", "1s", "--duration", "1s"},
		{"--backend-url", "https://127.0.0.1:1", "--backend-udp", "127.0.0.1:1", "--state", "/tmp", "--work-every", "1s"},
		{"extra"},
	} {
		var out, errb bytes.Buffer
		if code := runMain(append([]string{"fleet"}, args...), &out, &errb); code != 2 {
			t.Errorf("%v: exit %d, want 2 (%s)", args, code, errb.String())
		}
		if errb.Len() == 0 {
			t.Errorf("%v: no word on stderr", args)
		}
	}
}
