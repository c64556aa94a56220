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
	register(command{name: "footprint", summary: "measure the daemon's resident memory and idle CPU on simulated hardware", run: runFootprint})
}

func runFootprint(stdout, stderr io.Writer, args []string) int {
	fs := newFlags("footprint", stderr)
	var o demo.FootprintOptions
	fs.StringVar(&o.Agent, "agent", "", "the dcagent binary (default: dcagent beside this dcsim)")
	fs.StringVar(&o.Captures, "captures", "", "folder of smartctl JSON captures (default: the shared captures, or made-up drives)")
	fs.IntVar(&o.Drives, "drives", 24, "drives in the simulated enclosure")
	fs.DurationVar(&o.Duration, "duration", 10*time.Minute, "how long the daemon runs before it is measured")
	fs.DurationVar(&o.Heartbeat, "heartbeat", time.Minute, "heartbeat interval")
	fs.DurationVar(&o.SensorInterval, "sensor-interval", time.Minute, "sensor reading interval")
	fs.DurationVar(&o.DriveInterval, "drive-interval", 30*time.Minute, "drive reading interval")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if o.Agent == "" {
		self, _ := os.Executable()
		o.Agent = filepath.Join(filepath.Dir(self), "dcagent")
	}
	o.Tick = time.Hour // the hardware stays as it is: this measures the steady state
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, o.Duration+2*time.Minute)
	defer cancel()
	f, err := demo.MeasureFootprint(ctx, o, stdout)
	if err != nil {
		fmt.Fprintf(stderr, "dcsim footprint: %v\n", err)
		return 1
	}
	mib := func(k int64) float64 { return float64(k) / 1024 }
	fmt.Fprintf(stdout, "footprint: after %s with %d drives and a %s heartbeat: resident %.1f MiB (anonymous %.1f MiB, pages of the binary %.1f MiB; peak %.1f MiB), %.2f CPU seconds per hour, %d heartbeats answered\n",
		f.Duration, o.Drives, o.Heartbeat, mib(f.RSSKiB), mib(f.AnonKiB), mib(f.FileKiB), mib(f.HighWaterKiB), f.CPUSecondsHour, f.Heartbeats)
	return 0
}
