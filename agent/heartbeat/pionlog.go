package heartbeat

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/pion/logging"
)

// PionLogger adapts a *slog.Logger to pion's logger factory, so that
// pion/dtls's own messages land in the agent's log instead of on standard
// output. Everything pion says goes to slog's Debug level, with pion's
// own level as an attribute: the errors that matter come back from pion's
// calls and are logged by the caller with their context, and pion's trace
// lines (one per dropped record) would fill flash. nil discards all.
func PionLogger(l *slog.Logger) logging.LoggerFactory {
	if l == nil {
		l = slog.New(slog.DiscardHandler)
	}
	return pionFactory{l}
}

type pionFactory struct{ l *slog.Logger }

func (f pionFactory) NewLogger(scope string) logging.LeveledLogger {
	return pionLogger{f.l.With("scope", "pion/"+scope)}
}

type pionLogger struct{ l *slog.Logger }

func (p pionLogger) log(level, msg string) {
	if p.l.Enabled(context.Background(), slog.LevelDebug) {
		p.l.Debug(msg, "pion_level", level)
	}
}

func (p pionLogger) logf(level, format string, args ...any) {
	if p.l.Enabled(context.Background(), slog.LevelDebug) {
		p.l.Debug(fmt.Sprintf(format, args...), "pion_level", level)
	}
}

func (p pionLogger) Trace(msg string)                  { p.log("trace", msg) }
func (p pionLogger) Tracef(format string, args ...any) { p.logf("trace", format, args...) }
func (p pionLogger) Debug(msg string)                  { p.log("debug", msg) }
func (p pionLogger) Debugf(format string, args ...any) { p.logf("debug", format, args...) }
func (p pionLogger) Info(msg string)                   { p.log("info", msg) }
func (p pionLogger) Infof(format string, args ...any)  { p.logf("info", format, args...) }
func (p pionLogger) Warn(msg string)                   { p.log("warn", msg) }
func (p pionLogger) Warnf(format string, args ...any)  { p.logf("warn", format, args...) }
func (p pionLogger) Error(msg string)                  { p.log("error", msg) }
func (p pionLogger) Errorf(format string, args ...any) { p.logf("error", format, args...) }
