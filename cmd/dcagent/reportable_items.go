package main

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"

	"github.com/dcagent/dcagent/agent/event"
)

func init() {
	register(command{name: "reportable-items", summary: "print every field the agent can send home", run: runReportableItems})
}

// reportableItems is the --json form: the envelope every event carries and
// every event type with every payload field it may carry.
type reportableItems struct {
	Note     string           `json:"note"`
	Envelope []event.Field    `json:"envelope"`
	Types    []event.TypeSpec `json:"types"`
}

const reportableNote = "The agent sends only these fields; an event carrying any other is refused before it is stored. " +
	"The system ID is the only fact about the customer that leaves the device."

func runReportableItems(env *cmdEnv, args []string) int {
	fs := env.newFlags("reportable-items")
	asJSON := fs.Bool("json", false, "print JSON")
	if ok, st := parseFlags(fs, args); !ok {
		return st
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(env.stderr, "dcagent reportable-items: unexpected argument %q\n", fs.Arg(0))
		return 2
	}
	items := reportableItems{Note: reportableNote, Envelope: event.Envelope, Types: event.Registry()}
	if *asJSON {
		enc := json.NewEncoder(env.stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(items); err != nil {
			return fail(env, "reportable-items", err)
		}
		return 0
	}
	printReportable(env.stdout, items)
	return 0
}

func printReportable(w io.Writer, items reportableItems) {
	fmt.Fprintln(w, "Reportable items: everything dcagent can send to the vendor.")
	fmt.Fprintln(w, items.Note)
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Every event carries:")
	printFields(w, items.Envelope, 1)
	for _, t := range items.Types {
		fmt.Fprintf(w, "\nEvent type %s: %s\n", t.Type, t.Description)
		printFields(w, t.Fields, 1)
	}
}

func printFields(w io.Writer, fields []event.Field, depth int) {
	indent := strings.Repeat("  ", depth)
	for _, f := range fields {
		kind := string(f.Kind)
		if f.Kind == event.KindList {
			kind = "list of " + string(f.Elem)
		}
		fmt.Fprintf(w, "%s%-28s %-16s %s\n", indent, f.Name, kind, f.Description)
		if len(f.Fields) > 0 {
			printFields(w, f.Fields, depth+1)
		}
	}
}
