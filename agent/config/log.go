package config

// Log configures the agent's own log.
type Log struct {
	Level  string `conf:"level"`  // debug, info, warn, error
	Output string `conf:"output"` // stderr or syslog
}

func (l *Log) setDefaults() {
	l.Level = "info"
	l.Output = "stderr"
}

func (l *Log) validate() error {
	switch l.Level {
	case "debug", "info", "warn", "error":
	default:
		return keyErr("level", "%q is not one of debug, info, warn, error", l.Level)
	}
	switch l.Output {
	case "stderr", "syslog":
	default:
		return keyErr("output", "%q is not stderr or syslog", l.Output)
	}
	return nil
}
