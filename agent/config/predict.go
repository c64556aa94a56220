package config

import (
	"errors"
	"time"
)

// Predict configures failure prediction (agent/predict). The lines between
// risk levels are the package's choices, documented there; they are
// settings so that a fleet operator can tighten or relax them.
type Predict struct {
	// HistoryDays bounds the per-drive history kept on disk; older
	// readings are dropped.
	HistoryDays int `conf:"history_days"`
	// HistoryFlush is how often a drive's history is written when nothing
	// in it changed; a change (a counter, the verdict, a temperature
	// excursion) is written at once.
	HistoryFlush time.Duration `conf:"history_flush"`

	// GrowthWindow is how far back a rise of a media counter (reallocated,
	// pending, uncorrectable sectors, grown defects, NVMe media errors)
	// counts as recent growth: warn.
	GrowthWindow time.Duration `conf:"growth_window"`
	// FastGrowth within FastWindow is a rise fast enough to call the
	// drive failing.
	FastGrowth int           `conf:"fast_growth"`
	FastWindow time.Duration `conf:"fast_window"`
	// RisingDays is on how many separate days within GrowthWindow a media
	// counter must have risen to call the drive failing ("still getting
	// worse").
	RisingDays int `conf:"rising_days"`
	// UnreadableFail is the count of pending or offline-uncorrectable
	// sectors at which a drive is called failing.
	UnreadableFail int `conf:"unreadable_fail"`
	// RemappedWarn is the count of reallocated sectors or SAS grown defects
	// at which a drive is at warn (below it, at watch).
	RemappedWarn int `conf:"remapped_warn"`

	// BackplaneWindow is the window in which interface errors must rise on
	// BackplaneMinDrives drives of one enclosure, with their media counters
	// flat, to suspect the backplane or cable.
	BackplaneWindow    time.Duration `conf:"backplane_window"`
	BackplaneMinDrives int           `conf:"backplane_min_drives"`

	// TemperatureWindow is how far back excursions above a drive's own
	// temperature limits are counted; TemperatureWarnTime above the
	// warning limit within it (or any time above the critical limit) is
	// warn, less is watch.
	TemperatureWindow   time.Duration `conf:"temperature_window"`
	TemperatureWarnTime time.Duration `conf:"temperature_warn_time"`
}

func (p *Predict) setDefaults() {
	p.HistoryDays = 365
	p.HistoryFlush = 6 * time.Hour
	p.GrowthWindow = 30 * 24 * time.Hour
	p.FastGrowth = 50
	p.FastWindow = 24 * time.Hour
	p.RisingDays = 3
	p.UnreadableFail = 100
	p.RemappedWarn = 100
	p.BackplaneWindow = 24 * time.Hour
	p.BackplaneMinDrives = 2
	p.TemperatureWindow = 7 * 24 * time.Hour
	p.TemperatureWarnTime = 24 * time.Hour
}

// Validate checks the section on its own, for callers that build one in
// code rather than read it from a file.
func (p *Predict) Validate() error { return p.validate() }

func (p *Predict) validate() error {
	switch {
	case p.HistoryDays < 1 || p.HistoryDays > 3650:
		return keyErr("history_days", "%d is outside 1..3650", p.HistoryDays)
	case p.HistoryFlush <= 0:
		return keyErr("history_flush", "must be above zero")
	case p.GrowthWindow <= 0:
		return keyErr("growth_window", "must be above zero")
	case p.GrowthWindow > time.Duration(p.HistoryDays)*24*time.Hour:
		return keyErr("growth_window", "%s is longer than history_days (%d days) keeps", p.GrowthWindow, p.HistoryDays)
	case p.FastGrowth < 1:
		return keyErr("fast_growth", "must be at least 1")
	case p.FastWindow <= 0 || p.FastWindow > p.GrowthWindow:
		return keyErr("fast_window", "must be above zero and at most growth_window (%s)", p.GrowthWindow)
	case p.RisingDays < 2:
		return keyErr("rising_days", "must be at least 2 (one day of growth is growth, not a trend)")
	case p.UnreadableFail < 1:
		return keyErr("unreadable_fail", "must be at least 1")
	case p.RemappedWarn < 1:
		return keyErr("remapped_warn", "must be at least 1")
	case p.BackplaneWindow <= 0:
		return keyErr("backplane_window", "must be above zero")
	case p.BackplaneMinDrives < 2:
		return &KeyError{Key: "backplane_min_drives", Err: errors.New("must be at least 2: one drive alone points at its own slot or cable")}
	case p.TemperatureWindow <= 0:
		return keyErr("temperature_window", "must be above zero")
	case p.TemperatureWarnTime <= 0 || p.TemperatureWarnTime > p.TemperatureWindow:
		return keyErr("temperature_warn_time", "must be above zero and at most temperature_window (%s)", p.TemperatureWindow)
	}
	return nil
}
