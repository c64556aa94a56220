package main

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"github.com/dcagent/dcagent/agent/event"
)

func TestReportableItemsListsEveryField(t *testing.T) {
	var out, errb bytes.Buffer
	if st := runMain([]string{"reportable-items"}, &out, &errb); st != 0 {
		t.Fatalf("status %d: %s", st, errb.String())
	}
	text := out.String()
	if !strings.Contains(text, "only fact about the customer") {
		t.Fatal("the privacy note is missing")
	}
	var walk func(fs []event.Field)
	walk = func(fs []event.Field) {
		for _, f := range fs {
			if !strings.Contains(text, f.Name) || !strings.Contains(text, f.Description) {
				t.Errorf("field %s is not printed with its description", f.Name)
			}
			walk(f.Fields)
		}
	}
	for _, s := range event.Registry() {
		if !strings.Contains(text, "Event type "+string(s.Type)) {
			t.Errorf("type %s missing", s.Type)
		}
		walk(s.Fields)
	}
	walk(event.Envelope)
}

func TestReportableItemsJSON(t *testing.T) {
	var out, errb bytes.Buffer
	if st := runMain([]string{"reportable-items", "--json"}, &out, &errb); st != 0 {
		t.Fatalf("status %d: %s", st, errb.String())
	}
	var got reportableItems
	if err := json.Unmarshal(out.Bytes(), &got); err != nil {
		t.Fatal(err)
	}
	if len(got.Types) != len(event.Registry()) || len(got.Envelope) != len(event.Envelope) {
		t.Fatalf("JSON lists %d types, %d envelope fields", len(got.Types), len(got.Envelope))
	}
	if st := runMain([]string{"reportable-items", "extra"}, &out, &errb); st != 2 {
		t.Fatalf("extra argument: status %d", st)
	}
}
