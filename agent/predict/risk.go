package predict

import (
	"encoding/json"
	"fmt"
	"sort"
)

// Level is a drive's risk, from ok to fail. Levels compare with < and >.
type Level int

const (
	LevelOK Level = iota
	LevelWatch
	LevelWarn
	LevelFail
)

var levelNames = [...]string{"ok", "watch", "warn", "fail"}

func (l Level) String() string {
	if l < LevelOK || l > LevelFail {
		return fmt.Sprintf("level(%d)", int(l))
	}
	return levelNames[l]
}

// ParseLevel reads "ok", "watch", "warn" or "fail".
func ParseLevel(s string) (Level, error) {
	for i, n := range levelNames {
		if n == s {
			return Level(i), nil
		}
	}
	return LevelOK, fmt.Errorf("predict: %q is not a risk level (ok, watch, warn, fail)", s)
}

// MarshalText writes the level's name, so JSON carries "warn", not 2.
func (l Level) MarshalText() ([]byte, error) {
	if l < LevelOK || l > LevelFail {
		return nil, fmt.Errorf("predict: invalid level %d", int(l))
	}
	return []byte(levelNames[l]), nil
}

// UnmarshalText reads a level's name.
func (l *Level) UnmarshalText(b []byte) error {
	v, err := ParseLevel(string(b))
	if err != nil {
		return err
	}
	*l = v
	return nil
}

// Risk is the verdict on one drive: its level and why, most severe reason
// first. JSON: {"level":"warn","reasons":["..."]}; reasons is [] (never
// null) when there is nothing to say.
type Risk struct {
	Level   Level    `json:"level"`
	Reasons []string `json:"reasons"`
}

// MarshalJSON keeps "reasons" an array even when empty.
func (r Risk) MarshalJSON() ([]byte, error) {
	type plain Risk
	if r.Reasons == nil {
		r.Reasons = []string{}
	}
	return json.Marshal(plain(r))
}

// finding is one rule's result.
type finding struct {
	level Level
	text  string
}

// findings collects rule results in the order the rules ran.
type findings []finding

func (fs *findings) add(l Level, format string, args ...any) {
	*fs = append(*fs, finding{level: l, text: fmt.Sprintf(format, args...)})
}

// risk orders the findings, most severe first (rule order within a level),
// and takes the highest level.
func (fs findings) risk() Risk {
	sorted := append(findings(nil), fs...)
	sort.SliceStable(sorted, func(i, j int) bool { return sorted[i].level > sorted[j].level })
	r := Risk{Level: LevelOK, Reasons: make([]string, 0, len(sorted))}
	for _, f := range sorted {
		if f.level > r.Level {
			r.Level = f.level
		}
		r.Reasons = append(r.Reasons, f.text)
	}
	return r
}
