package demo

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"
)

// FootprintOptions shape a footprint measurement.
type FootprintOptions struct {
	LabOptions
	// Duration is how long the daemon runs before its memory is read; the
	// CPU it used after the first minute (start-up, enrollment and the
	// first full reading excluded) is scaled to an hour.
	Duration time.Duration
}

// Footprint is what the daemon costs in its steady state.
type Footprint struct {
	Duration       time.Duration
	RSSKiB         int64   // resident memory at the end (VmRSS)
	AnonKiB        int64   // of which anonymous: heap, stacks, runtime (RssAnon)
	FileKiB        int64   // of which pages of the binary, clean and reclaimable (RssFile)
	HighWaterKiB   int64   // peak resident memory (VmHWM)
	CPUSecondsHour float64 // user+system CPU per hour, steady state
	Heartbeats     int
}

// MeasureFootprint runs the daemon in a lab with the device's real
// schedules (sensors every minute, drives every 30 minutes, a heartbeat
// every 60 s unless o says otherwise) and reads its resident memory and
// CPU time from /proc.
func MeasureFootprint(ctx context.Context, o FootprintOptions, progress io.Writer) (*Footprint, error) {
	if o.Duration <= 0 {
		o.Duration = 10 * time.Minute
	}
	warm := time.Minute
	if o.Duration < 2*warm {
		warm = o.Duration / 2
	}
	l, err := NewLab(ctx, o.LabOptions)
	if err != nil {
		return nil, err
	}
	defer l.Close()
	if out, err := l.Enroll(ctx); err != nil {
		return nil, fmt.Errorf("%v: %s", err, out)
	}
	beats, stop := l.Backend.Heartbeat.Subscribe(16)
	defer stop()
	if err := l.StartAgent(); err != nil {
		return nil, err
	}
	pid := l.AgentPID()
	fmt.Fprintf(progress, "footprint: daemon pid %d with %d drives, heartbeat every %s, for %s\n", pid, o.Drives, o.Heartbeat, o.Duration)
	n := 0
	count := func(d time.Duration) error {
		t := time.NewTimer(d)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-beats:
				n++
			case <-t.C:
				return nil
			}
		}
	}
	if err := count(warm); err != nil {
		return nil, err
	}
	cpu0, err := cpuSeconds(pid)
	if err != nil {
		return nil, err
	}
	if err := count(o.Duration - warm); err != nil {
		return nil, err
	}
	cpu1, err := cpuSeconds(pid)
	if err != nil {
		return nil, err
	}
	m, err := memory(pid)
	if err != nil {
		return nil, err
	}
	steady := o.Duration - warm
	return &Footprint{Duration: o.Duration, RSSKiB: m["VmRSS"], AnonKiB: m["RssAnon"], FileKiB: m["RssFile"], HighWaterKiB: m["VmHWM"],
		CPUSecondsHour: (cpu1 - cpu0) * float64(time.Hour) / float64(steady), Heartbeats: n}, nil
}

// cpuSeconds reads utime+stime of a process from /proc/PID/stat.
func cpuSeconds(pid int) (float64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	s := string(b)
	// Fields after the command name, which is in parentheses and may hold spaces.
	rest := s[strings.LastIndexByte(s, ')')+2:]
	f := strings.Fields(rest)
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: too few fields", pid)
	}
	utime, _ := strconv.ParseFloat(f[11], 64)
	stime, _ := strconv.ParseFloat(f[12], 64)
	const ticks = 100 // USER_HZ on Linux
	return (utime + stime) / ticks, nil
}

// memory reads the kB figures of /proc/PID/status.
func memory(pid int) (map[string]int64, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	m := map[string]int64{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok || !strings.HasSuffix(v, " kB") {
			continue
		}
		n, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		m[k] = n
	}
	return m, sc.Err()
}
