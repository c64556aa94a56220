package predict

import (
	"time"

	"github.com/dcagent/dcagent/agent/config"
	"github.com/dcagent/dcagent/hal"
)

// Assess judges one snapshot on its own, with no history.
func Assess(snap hal.DriveSnapshot) Risk {
	return AssessSeries([]hal.DriveSnapshot{snap})
}

// AssessSeries judges a drive from several captures of it in time order,
// using the earlier ones as its history (`dcagent drive inspect` on saved
// reports). Only the trailing captures of the same drive as the last one
// count: a capture of another drive (another serial or model) ends the
// history there, as a replaced drive does in a slot. When every capture
// says when it was taken, growth is measured in time ("in 6 hours");
// otherwise by capture number ("between captures 1 and 3") and the rules
// that need a clock (fast growth, rising on separate days, time spent hot)
// are left out. The default [predict] settings apply. An empty series is
// at ok with no reasons.
func AssessSeries(snaps []hal.DriveSnapshot) Risk {
	if len(snaps) == 0 {
		return Risk{Level: LevelOK, Reasons: []string{}}
	}
	cfg := config.Default().Predict
	lastSnap := &snaps[len(snaps)-1]
	first := len(snaps) - 1
	for first > 0 && sameDrive(&snaps[first-1], lastSnap) {
		first--
	}
	run := snaps[first:]

	synthetic := false
	for i := range run {
		if run[i].Time.IsZero() || (i > 0 && !run[i].Time.After(run[i-1].Time)) {
			synthetic = true
			break
		}
	}
	// Synthetic times are one hour apart from an arbitrary base, so that
	// capture numbers can be read back from them.
	base := time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)
	h := &History{Key: DriveKey(lastSnap), Identity: Identity{Serial: lastSnap.Serial, Model: lastSnap.Model, WWN: lastSnap.WWN}}
	var now time.Time
	for i := range run {
		t := run[i].Time
		if synthetic {
			t = base.Add(time.Duration(i) * time.Hour)
		}
		h.Add(&run[i], t)
		now = t.UTC().Truncate(time.Second)
	}
	c := evalContext{cfg: &cfg, h: h, snap: lastSnap, now: now, synthetic: synthetic, base: base}
	fs := c.findings()
	if r, ok := interfaceRise(&c, seriesInterfaceWindow(&c, &cfg)); ok {
		if r.media {
			fs.add(LevelWatch, "%s together with its media counters", r.text)
		} else {
			fs.add(LevelWatch, "%s while its media counters stayed flat: check this drive's own slot and cable", r.text)
		}
	}
	return fs.risk()
}

// seriesInterfaceWindow is the backplane window, or the whole series when
// the captures carry no times.
func seriesInterfaceWindow(c *evalContext, cfg *config.Predict) time.Duration {
	if c.synthetic {
		return c.now.Sub(c.base) + time.Hour
	}
	return cfg.BackplaneWindow
}

// sameDrive reports whether two captures are of one drive.
func sameDrive(a, b *hal.DriveSnapshot) bool {
	ka, kb := DriveKey(a), DriveKey(b)
	if ka != kb {
		return false
	}
	if a.Model != "" && b.Model != "" && a.Model != b.Model {
		return false
	}
	return true
}
