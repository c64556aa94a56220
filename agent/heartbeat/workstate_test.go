package heartbeat

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dcagent/dcagent/agent/work"
)

func TestWorkStateRemembersAcrossLoads(t *testing.T) {
	dir := t.TempDir()
	ws, err := loadWorkState(dir)
	if err != nil {
		t.Fatal(err)
	}
	if run, err := ws.take("a"); !run || err != nil {
		t.Fatalf("first take: %v %v", run, err)
	}
	if run, _ := ws.take("a"); run {
		t.Fatal("second take of the same id says run")
	}
	ws2, err := loadWorkState(dir)
	if err != nil {
		t.Fatal(err)
	}
	if run, _ := ws2.take("a"); run {
		t.Fatal("after a reload the id is forgotten")
	}
	if len(ws2.acks) != 1 || ws2.acks[0].id != "a" {
		t.Fatalf("a repeated item is acknowledged again: %+v", ws2.acks)
	}
}

func TestWorkStateDamagedFileIsMovedAside(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, WorkStateFile)
	os.WriteFile(p, []byte("not cbor"), 0o600)
	ws, err := loadWorkState(dir)
	if err == nil || !strings.Contains(err.Error(), "damaged") || !strings.Contains(err.Error(), p) {
		t.Fatalf("err %v", err)
	}
	if _, err := os.Stat(p + ".bad"); err != nil {
		t.Fatalf("damaged file not kept for a person: %v", err)
	}
	if run, err := ws.take("x"); !run || err != nil {
		t.Fatalf("the agent cannot go on: %v %v", run, err)
	}
}

func TestWorkStateSaveFailureIsReported(t *testing.T) {
	dir := t.TempDir()
	ws, _ := loadWorkState(dir)
	os.Chmod(dir, 0o500)
	defer os.Chmod(dir, 0o700)
	if os.Geteuid() == 0 {
		// root writes anyway; make the target a directory instead.
		os.Chmod(dir, 0o700)
		os.Mkdir(filepath.Join(dir, WorkStateFile+".tmp"), 0o700)
	}
	run, err := ws.take("y")
	if !run || err == nil || !strings.Contains(err.Error(), "saving work state") {
		t.Fatalf("run %v err %v", run, err)
	}
}

func TestWorkStateFillAndConfirm(t *testing.T) {
	ws, _ := loadWorkState("")
	ws.take("a")
	ws.take("b")
	ws.addResult(work.Result{ID: "a", OK: true, Detail: strings.Repeat("x", 2*MaxDetailLen)})
	if !ws.unsent() {
		t.Fatal("nothing unsent")
	}
	var h Heartbeat
	ws.fill(&h)
	if len(h.Acks) != 2 || len(h.Results) != 1 || len(h.Results[0].Detail) != MaxDetailLen {
		t.Fatalf("filled %+v", h)
	}
	if ws.unsent() {
		t.Fatal("still unsent after fill")
	}
	ws.confirmAcks(h.Acks)
	ws.confirmResults([]string{"a"})
	if len(ws.acks) != 0 || len(ws.results) != 0 {
		t.Fatalf("left %+v %+v", ws.acks, ws.results)
	}
}
