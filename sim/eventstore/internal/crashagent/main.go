// Command crashagent is the agent process of the crash test
// (sim/eventstore/crash_test.go): it opens the spool, runs the uploader,
// and puts events 0..count-1 of crashgen's run, recording its progress in
// a file after each group of events is durable. The test kills it with
// SIGKILL at random moments and starts it again; it resumes where its
// progress file says, making the unrecorded events again with the same ids.
package main

import (
	"context"
	"crypto/tls"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/dcagent/dcagent/agent/connecthome"
	"github.com/dcagent/dcagent/agent/spool"
	"github.com/dcagent/dcagent/crypto/tlsconf"
	"github.com/dcagent/dcagent/sim/eventstore/internal/crashgen"
)

func main() {
	var (
		spoolDir  = flag.String("spool", "", "spool directory")
		backend   = flag.String("backend", "", "backend host:port")
		caFile    = flag.String("ca", "", "vendor CA PEM")
		certFile  = flag.String("cert", "", "device certificate PEM")
		keyFile   = flag.String("key", "", "device key PEM")
		seed      = flag.Int64("seed", 1, "event generator seed")
		count     = flag.Int("count", 10000, "events to make")
		group     = flag.Int("group", 8, "events put concurrently before progress is recorded")
		exitEmpty = flag.Bool("exit-when-done", false, "exit 0 once every event is made and the spool is empty")
		rate      = flag.Int("rate", 0, "events per second to make (0: as fast as possible)")
	)
	flag.Parse()
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	if err := run(*spoolDir, *backend, *caFile, *certFile, *keyFile, *seed, *count, *group, *rate, *exitEmpty, log); err != nil {
		fmt.Fprintln(os.Stderr, "crashagent:", err)
		os.Exit(1)
	}
}

func run(dir, backend, caFile, certFile, keyFile string, seed int64, count, group, rate int, exitEmpty bool, log *slog.Logger) error {
	pool, err := tlsconf.LoadCAFile(caFile)
	if err != nil {
		return err
	}
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return err
	}
	tlsCfg, err := tlsconf.Client(pool, &cert, "localhost")
	if err != nil {
		return err
	}
	sp, err := spool.Open(dir, spool.Limits{}, log)
	if err != nil {
		return err
	}
	up, err := connecthome.NewWithOptions(connecthome.Options{
		BackendURL: "https://" + backend, BatchEvents: 128,
		RetryMin: 20 * time.Millisecond, RetryMax: 300 * time.Millisecond, RequestTimeout: 3 * time.Second,
	}, sp, tlsCfg, log)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go up.Run(ctx)

	progressFile := filepath.Join(filepath.Dir(dir), "progress")
	next := readProgress(progressFile)
	began, made := time.Now(), 0
	for next < count {
		if rate > 0 {
			// Pace production so that kills keep landing while events are
			// being made and sent, not after everything is done.
			if ahead := time.Duration(made)*time.Second/time.Duration(rate) - time.Since(began); ahead > 0 {
				time.Sleep(ahead)
			}
		}
		end := min(next+group, count)
		var wg sync.WaitGroup
		errs := make(chan error, end-next)
		for i := next; i < end; i++ {
			wg.Add(1)
			go func(i int) {
				defer wg.Done()
				errs <- sp.Put(crashgen.Event(seed, i))
			}(i)
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				return err
			}
		}
		made += end - next
		next = end
		writeProgress(progressFile, next)
	}
	for {
		if exitEmpty && sp.Len() == 0 {
			cancel()
			return sp.Close()
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func readProgress(path string) int {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	n, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	return n
}

// writeProgress replaces the progress file atomically. No fsync: the test
// kills the process, not the machine, and the page cache survives that.
func writeProgress(path string, n int) {
	tmp := path + ".tmp"
	_ = os.WriteFile(tmp, []byte(strconv.Itoa(n)), 0o600)
	_ = os.Rename(tmp, path)
}
