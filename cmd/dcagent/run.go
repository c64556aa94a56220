package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"log/syslog"
	"os"
	"os/signal"
	"sync"
	"syscall"

	"github.com/dcagent/dcagent/agent/config"
	"github.com/dcagent/dcagent/agent/daemon"
)

func init() {
	register(command{name: "run", summary: "run the daemon (SIGTERM stops it, SIGHUP reloads the configuration)", run: runDaemon})
}

func runDaemon(env *cmdEnv, args []string) int {
	fs := env.newFlags("run")
	if ok, st := parseFlags(fs, args); !ok {
		return st
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	reload := make(chan struct{}, 1)
	go func() {
		for range hup {
			select {
			case reload <- struct{}{}:
			default:
			}
		}
	}()

	logs := &switchableLog{stderr: env.stderr}
	err := daemon.Run(ctx, daemon.Options{
		ConfigPath: env.configPath,
		Version:    version,
		Logger:     slog.New(logs),
		OnConfig:   logs.configure,
	}, reload)
	logs.close()
	if err != nil {
		return fail(env, "run", err)
	}
	return 0
}

// switchableLog is a slog handler whose level and output (stderr or the
// local syslog) follow the configuration, so that SIGHUP can change them.
type switchableLog struct {
	stderr io.Writer
	level  slog.LevelVar

	mu      sync.Mutex
	inner   slog.Handler
	syslogW *syslog.Writer
}

func (l *switchableLog) configure(cfg *config.Config) {
	var lvl slog.Level
	_ = lvl.UnmarshalText([]byte(cfg.Log.Level))
	l.level.Set(lvl)
	l.mu.Lock()
	defer l.mu.Unlock()
	var out io.Writer = l.stderr
	if cfg.Log.Output == "syslog" {
		if l.syslogW == nil {
			w, err := syslog.New(syslog.LOG_DAEMON|syslog.LOG_INFO, "dcagent")
			if err != nil {
				fmt.Fprintf(l.stderr, "dcagent: no local syslog (%v); logging to stderr\n", err)
			} else {
				l.syslogW = w
			}
		}
		if l.syslogW != nil {
			out = l.syslogW
		}
	}
	l.inner = slog.NewTextHandler(out, &slog.HandlerOptions{Level: &l.level})
}

func (l *switchableLog) handler() slog.Handler {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.inner == nil {
		l.inner = slog.NewTextHandler(l.stderr, &slog.HandlerOptions{Level: &l.level})
	}
	return l.inner
}

func (l *switchableLog) close() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.syslogW != nil {
		l.syslogW.Close()
	}
}

func (l *switchableLog) Enabled(ctx context.Context, lv slog.Level) bool {
	return lv >= l.level.Level()
}
func (l *switchableLog) Handle(ctx context.Context, r slog.Record) error {
	return l.handler().Handle(ctx, r)
}
func (l *switchableLog) WithAttrs(as []slog.Attr) slog.Handler {
	return &derivedLog{root: l, attrs: as}
}
func (l *switchableLog) WithGroup(name string) slog.Handler {
	return &derivedLog{root: l, group: name}
}

// derivedLog carries With attributes over a switchableLog, resolving the
// current output at every record.
type derivedLog struct {
	root   *switchableLog
	parent *derivedLog
	attrs  []slog.Attr
	group  string
}

func (d *derivedLog) build() slog.Handler {
	var h slog.Handler
	if d.parent != nil {
		h = d.parent.build()
	} else {
		h = d.root.handler()
	}
	if d.group != "" {
		return h.WithGroup(d.group)
	}
	return h.WithAttrs(d.attrs)
}

func (d *derivedLog) Enabled(ctx context.Context, lv slog.Level) bool { return d.root.Enabled(ctx, lv) }
func (d *derivedLog) Handle(ctx context.Context, r slog.Record) error {
	return d.build().Handle(ctx, r)
}
func (d *derivedLog) WithAttrs(as []slog.Attr) slog.Handler {
	return &derivedLog{root: d.root, parent: d, attrs: as}
}
func (d *derivedLog) WithGroup(name string) slog.Handler {
	return &derivedLog{root: d.root, parent: d, group: name}
}
