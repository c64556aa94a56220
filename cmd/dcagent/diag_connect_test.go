package main

import (
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dcagent/dcagent/sim/backend"
)

type diagJSON struct {
	Findings []struct {
		Check, Status, Subject, Message, Action string
	} `json:"findings"`
}

func backendFindings(t *testing.T, conf string) map[string]string {
	t.Helper()
	out, _, _ := diagRun("--config", conf, "diag", "--json")
	var rep diagJSON
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	got := map[string]string{}
	for _, f := range rep.Findings {
		if f.Check == "backend" {
			got[f.Status+" "+f.Message] = f.Subject
		}
	}
	return got
}

func hasFinding(m map[string]string, status, text string) bool {
	for k := range m {
		if strings.HasPrefix(k, status+" ") && strings.Contains(k, text) {
			return true
		}
	}
	return false
}

// diag follows the path to a real backend: TCP, TLS against the pinned CA,
// and UDP to the heartbeat service; and names the step that breaks.
func TestDiagBackendReachability(t *testing.T) {
	dir := t.TempDir()
	b, err := backend.Start(backend.Options{Dir: filepath.Join(dir, "backend")})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	write := func(name, url, hb, ca string) string {
		p := filepath.Join(dir, name)
		conf := "[device]\nsystem_id = S1\nstate_dir = " + filepath.Join(dir, "state") + "\n[backend]\nurl = " + url + "\nheartbeat_addr = " + hb + "\nca_file = " + ca + "\n"
		if err := os.WriteFile(p, []byte(conf), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}

	got := backendFindings(t, write("good.conf", b.URL(), b.HeartbeatAddr(), b.CAFile()))
	for _, want := range []string{"TCP connects", "verified against the pinned vendor CA", "answers over UDP"} {
		if !hasFinding(got, "ok", want) {
			t.Errorf("no ok finding %q: %v", want, got)
		}
	}

	// Another CA pinned: TLS fails and says so.
	other := filepath.Join(dir, "other-ca.pem")
	b2, err := backend.Start(backend.Options{Dir: filepath.Join(dir, "backend2")})
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(other, mustRead(t, b2.CAFile()), 0o644)
	b2.Close()
	got = backendFindings(t, write("otherca.conf", b.URL(), b.HeartbeatAddr(), other))
	if !hasFinding(got, "fail", "TLS with the backend fails against the pinned vendor CA") {
		t.Errorf("wrong CA not reported: %v", got)
	}

	// Nothing listening on TCP, and a UDP port that never answers.
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	deadTCP := ln.Addr().String()
	ln.Close()
	pc, _ := net.ListenPacket("udp", "127.0.0.1:0")
	defer pc.Close()
	got = backendFindings(t, write("dead.conf", "https://"+deadTCP, pc.LocalAddr().String(), b.CAFile()))
	if !hasFinding(got, "fail", "TCP to the backend fails") {
		t.Errorf("dead TCP not reported: %v", got)
	}
	got = backendFindings(t, write("deadudp.conf", b.URL(), pc.LocalAddr().String(), b.CAFile()))
	if !hasFinding(got, "fail", "no answer over UDP") {
		t.Errorf("silent UDP not reported: %v", got)
	}
}

func mustRead(t *testing.T, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
