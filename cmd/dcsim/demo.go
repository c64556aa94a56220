package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/dcagent/dcagent/sim/demo"
)

func init() {
	register(command{name: "demo", summary: "run the whole job on this machine and tell the story", run: runDemo})
}

func runDemo(stdout, stderr io.Writer, args []string) int {
	fs := newFlags("demo", stderr)
	var o demo.Options
	fs.StringVar(&o.Agent, "agent", "", "the dcagent binary (default: dcagent beside this dcsim)")
	fs.StringVar(&o.Captures, "captures", "", "folder of smartctl JSON captures (default: ../shared/testdata/smart/json when found; \"none\" makes drives up)")
	fs.DurationVar(&o.Tick, "tick", 2*time.Second, "real time between steps of the simulated hardware")
	fs.DurationVar(&o.Timeout, "timeout", 110*time.Second, "give up after this long")
	fs.BoolVar(&o.Keep, "keep", false, "keep the lab's folder (configuration, state, logs) afterwards")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if o.Agent == "" {
		self, err := os.Executable()
		if err != nil {
			fmt.Fprintf(stderr, "dcsim demo: %v\n", err)
			return 1
		}
		o.Agent = filepath.Join(filepath.Dir(self), "dcagent")
	}
	if _, err := os.Stat(o.Agent); err != nil {
		fmt.Fprintf(stderr, "dcsim demo: the agent binary %s: %v (build it with make build, or name it with --agent)\n", o.Agent, err)
		return 1
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := demo.Run(ctx, o, stdout); err != nil {
		if ctx.Err() != nil {
			fmt.Fprintln(stderr, "dcsim demo: interrupted")
			return 130
		}
		fmt.Fprintf(stderr, "dcsim demo: %v\n", err)
		return 1
	}
	return 0
}
