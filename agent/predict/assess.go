package predict

import (
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/dcagent/dcagent/agent/config"
	"github.com/dcagent/dcagent/hal"
)

// smartctl exit status bits (smartctl(8), "EXIT STATUS").
const (
	exitOpenFailed     = 1 << 1 // device open failed, or no SMART
	exitDiskFailing    = 1 << 3 // SMART status: disk failing
	exitPrefailNow     = 1 << 4 // attributes at or below threshold, status OK
	exitAttrPast       = 1 << 5 // an attribute was at or below threshold in the past
	exitSelfTestErrors = 1 << 7 // the self-test log records errors
)

// NVMe critical warning bits (NVMe base specification, SMART / Health
// Information log page, byte 0).
var critWarningBits = []struct {
	bit   uint
	level Level
	text  string
}{
	{0, LevelFail, "available spare below its threshold"},
	{1, LevelWarn, "temperature outside its limits"},
	{2, LevelFail, "NVM subsystem reliability degraded by media or internal errors"},
	{3, LevelFail, "media placed in read-only mode"},
	{4, LevelWarn, "volatile memory backup device failed"},
	{5, LevelWarn, "persistent memory region read-only or unreliable"},
}

// counterRule says how a failure-predicting counter is judged.
type counterRule struct {
	f    field
	noun string // "pending sectors": for "pending sectors rose from 0 to 24"
	tag  string // "ATA 197"
	// describe says what a count means, for a reason without growth.
	describe func(v int64) string
	// level is the level a count reaches on its own, without growth.
	level func(v int64, cfg *config.Predict) Level
	// media counters record damage to the stored data; their growth is at
	// least warn. The others (timeouts, spin retries) rise to watch.
	media bool
}

func atLeast(watch, warn, fail int64) func(v int64) Level {
	return func(v int64) Level {
		switch {
		case fail > 0 && v >= fail:
			return LevelFail
		case warn > 0 && v >= warn:
			return LevelWarn
		case watch > 0 && v >= watch:
			return LevelWatch
		}
		return LevelOK
	}
}

var counterRules = []counterRule{
	{
		f: fPending, noun: "pending sectors", tag: "ATA 197", media: true,
		describe: func(v int64) string {
			return fmt.Sprintf("%d %s pending reallocation: the drive could not read %s (ATA 197)", v, plural(v, "sector", "sectors"), them(v))
		},
		level: func(v int64, c *config.Predict) Level { return atLeast(0, 1, int64(c.UnreadableFail))(v) },
	},
	{
		f: fOfflineUnc, noun: "offline uncorrectable sectors", tag: "ATA 198", media: true,
		describe: func(v int64) string {
			return fmt.Sprintf("%d %s the drive's offline scan could not read (ATA 198)", v, plural(v, "sector", "sectors"))
		},
		level: func(v int64, c *config.Predict) Level { return atLeast(0, 1, int64(c.UnreadableFail))(v) },
	},
	{
		f: fReportedUnc, noun: "reported uncorrectable errors", tag: "ATA 187", media: true,
		describe: func(v int64) string {
			return fmt.Sprintf("%d %s the drive could not correct reported to the host (ATA 187)", v, plural(v, "error", "errors"))
		},
		level: func(v int64, c *config.Predict) Level { return atLeast(0, 1, 0)(v) },
	},
	{
		f: fEndToEnd, noun: "end-to-end errors", tag: "ATA 184", media: true,
		describe: func(v int64) string {
			return fmt.Sprintf("%d end-to-end data path %s inside the drive (ATA 184)", v, plural(v, "error", "errors"))
		},
		level: func(v int64, c *config.Predict) Level { return atLeast(0, 1, 0)(v) },
	},
	{
		f: fMediaErrors, noun: "media errors", tag: "NVMe", media: true,
		describe: func(v int64) string {
			return fmt.Sprintf("%d unrecovered media and data integrity %s (NVMe)", v, plural(v, "error", "errors"))
		},
		level: func(v int64, c *config.Predict) Level { return atLeast(0, 1, 0)(v) },
	},
	{
		f: fUncorrected, noun: "uncorrected errors", tag: "SAS error counter log", media: true,
		describe: func(v int64) string {
			return fmt.Sprintf("%d uncorrected read, write or verify %s (SAS error counter log)", v, plural(v, "error", "errors"))
		},
		level: func(v int64, c *config.Predict) Level { return atLeast(0, 1, 0)(v) },
	},
	{
		f: fReallocated, noun: "reallocated sectors", tag: "ATA 5", media: true,
		describe: func(v int64) string {
			return fmt.Sprintf("%d reallocated %s (ATA 5)", v, plural(v, "sector", "sectors"))
		},
		level: func(v int64, c *config.Predict) Level { return atLeast(1, int64(c.RemappedWarn), 0)(v) },
	},
	{
		f: fGrownDefects, noun: "grown defects", tag: "SAS", media: true,
		describe: func(v int64) string {
			return fmt.Sprintf("%d grown %s: sectors remapped in service (SAS)", v, plural(v, "defect", "defects"))
		},
		level: func(v int64, c *config.Predict) Level { return atLeast(1, int64(c.RemappedWarn), 0)(v) },
	},
	{
		f: fCmdTimeouts, noun: "command timeouts", tag: "ATA 188",
		describe: func(v int64) string {
			return fmt.Sprintf("%d command %s (ATA 188)", v, plural(v, "timeout", "timeouts"))
		},
		level: func(v int64, c *config.Predict) Level { return atLeast(1, 0, 0)(v) },
	},
	{
		f: fSpinRetries, noun: "spin-up retries", tag: "ATA 10",
		describe: func(v int64) string {
			return fmt.Sprintf("the spindle needed %d spin-up %s (ATA 10)", v, plural(v, "retry", "retries"))
		},
		level: func(v int64, c *config.Predict) Level { return atLeast(1, 0, 0)(v) },
	},
}

// mediaFields are the counters whose growth means damage to stored data;
// a backplane is suspected only while they stay flat.
var mediaFields = func() []field {
	var fs []field
	for _, r := range counterRules {
		if r.media {
			fs = append(fs, r.f)
		}
	}
	return fs
}()

// interfaceFields count transfer errors on the link to the drive.
var interfaceFields = []struct {
	f    field
	noun string
}{
	{fUDMACRC, "UDMA CRC errors (ATA 199)"},
	{fLinkErrors, "SAS link errors (invalid DWORDs, loss of sync, phy resets)"},
}

// evalContext is one drive's assessment: its history (newest sample last,
// taken at now) and the snapshot behind that sample.
type evalContext struct {
	cfg  *config.Predict
	h    *History
	snap *hal.DriveSnapshot
	now  time.Time
	// synthetic: sample times are capture numbers, not clock times
	// (AssessSeries on captures that do not say when they were taken).
	synthetic bool
	base      time.Time // the first capture's synthetic time
}

// findings runs every per-drive rule.
func (c *evalContext) findings() findings {
	var fs findings
	c.verdictRules(&fs)
	c.attributeRules(&fs)
	c.nvmeRules(&fs)
	for i := range counterRules {
		c.counterRule(&fs, &counterRules[i])
	}
	c.temperatureRules(&fs)
	if len(fs) == 0 && !c.hasHealthData() {
		if c.snap.ExitStatus != nil && *c.snap.ExitStatus&exitOpenFailed != 0 {
			fs.add(LevelOK, "smartctl could not open the device or read its SMART data (exit status bit 1): risk not assessed")
		} else {
			fs.add(LevelOK, "the drive reported no SMART health data: risk not assessed")
		}
	}
	return fs
}

func (c *evalContext) hasHealthData() bool {
	s := c.snap
	if s.SmartPassed != nil || len(s.FailingAttributes) > 0 {
		return true
	}
	last := c.h.last()
	for f := field(0); f <= fLinkErrors; f++ {
		if last.has(f) {
			return true
		}
	}
	return false
}

func (c *evalContext) verdictRules(fs *findings) {
	s := c.snap
	exit := 0
	if s.ExitStatus != nil {
		exit = *s.ExitStatus
	}
	switch {
	case s.SmartPassed != nil && !*s.SmartPassed:
		text := "SMART overall health FAILED: the drive predicts its own failure"
		if since, ok := c.failedSince(); ok {
			text += fmt.Sprintf(" (it passed %s ago)", c.ago(since))
		}
		fs.add(LevelFail, "%s", text)
	case exit&exitDiskFailing != 0:
		fs.add(LevelFail, "smartctl reports the disk failing (exit status bit 3)")
	}
	if exit&exitSelfTestErrors != 0 {
		fs.add(LevelWarn, "the drive's self-test log records a failed self-test (smartctl exit status bit 7)")
	}
	var now, past bool
	for _, a := range s.FailingAttributes {
		if a.When == "past" {
			past = true
		} else {
			now = true
		}
	}
	if exit&exitPrefailNow != 0 && !now {
		fs.add(LevelWarn, "smartctl reports attributes at or below their failure threshold (exit status bit 4)")
	}
	if exit&exitAttrPast != 0 && !past {
		fs.add(LevelWarn, "smartctl reports an attribute that was at or below its failure threshold in the past (exit status bit 5)")
	}
}

// failedSince finds when the verdict last said PASSED, if the history
// holds such a reading.
func (c *evalContext) failedSince() (time.Time, bool) {
	for i := len(c.h.Samples) - 2; i >= 0; i-- {
		if v, ok := c.h.Samples[i].get(fSmartPassed); ok && v == 1 {
			return c.h.Samples[i].Time(), true
		}
	}
	return time.Time{}, false
}

func (c *evalContext) attributeRules(fs *findings) {
	for _, a := range c.snap.FailingAttributes {
		name := strings.TrimSpace(a.Name)
		if name == "" {
			name = "unnamed"
		}
		if a.When == "past" {
			fs.add(LevelWarn, "attribute %d %s was at or below its failure threshold in the past (value %d, threshold %d)", a.ID, name, a.Value, a.Thresh)
			continue
		}
		if a.ID == 190 || a.ID == 194 {
			fs.add(LevelWarn, "attribute %d %s is at or below its threshold now (value %d, threshold %d): the drive is too hot", a.ID, name, a.Value, a.Thresh)
			continue
		}
		fs.add(LevelFail, "attribute %d %s is at or below its failure threshold now (value %d, threshold %d)", a.ID, name, a.Value, a.Thresh)
	}
}

func (c *evalContext) nvmeRules(fs *findings) {
	last := c.h.last()
	if cw, ok := last.get(fCritWarning); ok && cw != 0 {
		var parts []string
		lvl := LevelOK
		for _, b := range critWarningBits {
			if cw&(1<<b.bit) != 0 {
				parts = append(parts, b.text)
				lvl = max(lvl, b.level)
			}
		}
		if unknown := cw &^ 0x3f; unknown != 0 {
			parts = append(parts, fmt.Sprintf("bits %#x that this agent does not know", unknown))
			lvl = max(lvl, LevelWarn)
		}
		fs.add(lvl, "NVMe critical warning %#02x: %s", cw, strings.Join(parts, "; "))
	}
	spare, okS := last.get(fAvailSpare)
	thresh, okT := last.get(fSpareThresh)
	if okS && okT && thresh > 0 {
		switch {
		case spare < thresh:
			fs.add(LevelFail, "NVMe available spare %d%% below threshold %d%%", spare, thresh)
		case spare < 100 && spare < thresh+10:
			// A full spare is never "close", whatever the threshold (some
			// drives set it at 99%).
			fs.add(LevelWatch, "NVMe available spare %d%% is close to its threshold %d%%", spare, thresh)
		}
	}
	if okS && (!okT || thresh == 0 || spare >= thresh) {
		if from, since, ok := c.decline(fAvailSpare, c.cfg.GrowthWindow); ok {
			fs.add(LevelWatch, "NVMe available spare fell from %d%% to %d%% %s", from, spare, c.span(since))
		}
	}
	if used, ok := last.get(fPctUsed); ok {
		switch {
		case used >= 100:
			fs.add(LevelWarn, "rated write endurance used up (NVMe percentage used %d%%)", used)
		case used >= 90:
			fs.add(LevelWatch, "%d%% of rated write endurance used (NVMe percentage used)", used)
		}
	}
}

// counterRule judges one counter by its level and its growth.
func (c *evalContext) counterRule(fs *findings, r *counterRule) {
	last := c.h.last()
	cur, ok := last.get(r.f)
	if !ok {
		return
	}
	levelNow := r.level(cur, c.cfg)
	g, grew := c.growth(r.f, c.cfg.GrowthWindow)
	if !grew {
		if levelNow == LevelOK {
			if peak, ok := c.peak(r.f, c.cfg.GrowthWindow); ok && peak > cur && r.media {
				fs.add(LevelWatch, "%s rose to %d %s and fell back to %d (%s)", r.noun, peak, c.within(c.cfg.GrowthWindow), cur, r.tag)
			}
			return
		}
		text := r.describe(cur)
		if since, atLeast, ok := c.unchangedSince(r.f); ok && !c.synthetic && c.now.Sub(since) >= 7*24*time.Hour {
			if atLeast {
				text += ", unchanged for at least " + humanDuration(c.now.Sub(since))
			} else {
				text += ", unchanged for " + humanDuration(c.now.Sub(since))
			}
		}
		fs.add(levelNow, "%s", text)
		return
	}

	growthLevel := LevelWatch
	var why []string
	if r.media {
		growthLevel = LevelWarn
		if !c.synthetic && g.since.Before(c.now.Add(-2*c.cfg.GrowthWindow)) {
			// The only earlier reading is much older than the window: the
			// rise happened some time in between, not necessarily recently.
			growthLevel = LevelWatch
		}
		if !c.synthetic {
			if fast, ok := c.growth(r.f, c.cfg.FastWindow); ok && fast.to-fast.from >= int64(c.cfg.FastGrowth) {
				growthLevel = LevelFail
				why = append(why, fmt.Sprintf("fast: %d or more %s", c.cfg.FastGrowth, c.within(c.cfg.FastWindow)))
			}
			if days := c.risingDays(r.f, c.cfg.GrowthWindow); days >= c.cfg.RisingDays {
				growthLevel = LevelFail
				why = append(why, fmt.Sprintf("rising on %d separate days %s: still getting worse", days, c.within(c.cfg.GrowthWindow)))
			}
		}
	}
	text := fmt.Sprintf("%s rose from %d to %d %s (%s)", r.noun, g.from, g.to, c.span(g.since), r.tag)
	if len(why) > 0 {
		text += ", " + strings.Join(why, ", ")
	}
	if levelNow > growthLevel {
		text = r.describe(cur) + fmt.Sprintf("; up from %d %s", g.from, c.span(g.since))
	}
	fs.add(max(levelNow, growthLevel), "%s", text)
}

func (c *evalContext) temperatureRules(fs *findings) {
	last := c.h.last()
	temp, okT := last.get(fTempC)
	warn, okW := last.get(fTempWarnC)
	crit, okC := last.get(fTempCritC)
	okW = okW && warn > 0
	okC = okC && crit > 0
	if okT {
		switch {
		case okC && temp >= crit:
			fs.add(LevelWarn, "temperature %d °C is at or above the drive's critical limit %d °C", temp, crit)
		case okW && temp >= warn:
			fs.add(LevelWatch, "temperature %d °C is at or above the drive's warning limit %d °C", temp, warn)
		}
	}
	if c.synthetic || len(c.h.Samples) < 2 {
		return
	}
	window := c.cfg.TemperatureWindow
	hotWarn := c.cumulativeIn(fAboveWarnSecs, window)
	hotCrit := c.cumulativeIn(fAboveCritSecs, window)
	if hotWarn <= 0 && hotCrit <= 0 {
		return
	}
	peak, excursions := c.excursions(window)
	detail := fmt.Sprintf("%d %s, peak %d °C", excursions, plural(int64(excursions), "excursion", "excursions"), peak)
	switch {
	case hotCrit > 0:
		fs.add(LevelWarn, "temperature was at or above the drive's critical limit %s for %s %s (%s)", limitText(crit, okC), humanDuration(hotCrit), c.within(window), detail)
	case hotWarn >= c.cfg.TemperatureWarnTime:
		fs.add(LevelWarn, "temperature was at or above the drive's warning limit %s for %s %s (%s)", limitText(warn, okW), humanDuration(hotWarn), c.within(window), detail)
	default:
		fs.add(LevelWatch, "temperature was at or above the drive's warning limit %s for %s %s (%s)", limitText(warn, okW), humanDuration(hotWarn), c.within(window), detail)
	}
}

func limitText(v int64, ok bool) string {
	if !ok {
		return ""
	}
	return fmt.Sprintf("%d °C", v)
}

// growthResult is a counter's rise within a window.
type growthResult struct {
	from, to int64
	since    time.Time // the last reading at the low value, before the rise
}

// windowStart returns the index of the first sample that describes the
// window [now-window, now]: the last sample at or before its start (it
// tells the state when the window opened), else the first sample.
func (c *evalContext) windowStart(window time.Duration) int {
	start := c.now.Add(-window).Unix()
	// The first sample after the start, minus one.
	i := sort.Search(len(c.h.Samples), func(j int) bool { return c.h.Samples[j].unix > start })
	return max(i-1, 0)
}

// growth reports whether f's newest value is above its lowest value in the
// window, and since when it rose.
func (c *evalContext) growth(f field, window time.Duration) (growthResult, bool) {
	n := len(c.h.Samples)
	cur, ok := c.h.Samples[n-1].get(f)
	if !ok || n < 2 {
		return growthResult{}, false
	}
	low, found := int64(0), false
	var since time.Time
	for i := c.windowStart(window); i < n-1; i++ {
		v, ok := c.h.Samples[i].get(f)
		if !ok {
			continue
		}
		if !found || v <= low {
			low, since, found = v, c.h.Samples[i].Time(), true
		}
	}
	if !found || cur <= low {
		return growthResult{}, false
	}
	return growthResult{from: low, to: cur, since: since}, true
}

// decline is growth turned around: f's newest value is below its highest
// in the window.
func (c *evalContext) decline(f field, window time.Duration) (from int64, since time.Time, ok bool) {
	n := len(c.h.Samples)
	cur, present := c.h.Samples[n-1].get(f)
	if !present || n < 2 {
		return 0, time.Time{}, false
	}
	found := false
	for i := c.windowStart(window); i < n-1; i++ {
		v, ok := c.h.Samples[i].get(f)
		if !ok {
			continue
		}
		if !found || v >= from {
			from, since, found = v, c.h.Samples[i].Time(), true
		}
	}
	return from, since, found && from > cur
}

// peak is f's highest value in the window.
func (c *evalContext) peak(f field, window time.Duration) (int64, bool) {
	best, found := int64(0), false
	for i := c.windowStart(window); i < len(c.h.Samples); i++ {
		if v, ok := c.h.Samples[i].get(f); ok && (!found || v > best) {
			best, found = v, true
		}
	}
	return best, found
}

// risingDays counts the separate days (24-hour periods counted back from
// now) in the window in which f went up.
func (c *evalContext) risingDays(f field, window time.Duration) int {
	days := map[int64]bool{}
	start := c.windowStart(window)
	prev, havePrev := c.h.Samples[start].get(f)
	for i := start + 1; i < len(c.h.Samples); i++ {
		v, ok := c.h.Samples[i].get(f)
		if !ok {
			continue
		}
		if havePrev && v > prev {
			days[int64(c.now.Sub(c.h.Samples[i].Time())/(24*time.Hour))] = true
		}
		prev, havePrev = v, true
	}
	return len(days)
}

// unchangedSince is the start of the run of readings with f's newest
// value. When the run reaches back to the oldest reading kept, the value
// may be older still: atLeast is then true, unless the history never
// dropped a reading (its oldest is where it began), when the run starts
// at the history's start.
func (c *evalContext) unchangedSince(f field) (since time.Time, atLeast, ok bool) {
	n := len(c.h.Samples)
	cur, present := c.h.Samples[n-1].get(f)
	if !present {
		return time.Time{}, false, false
	}
	since = c.h.Samples[n-1].Time()
	for i := n - 2; i >= 0; i-- {
		v, ok := c.h.Samples[i].get(f)
		if !ok || v != cur {
			return since, false, true
		}
		since = c.h.Samples[i].Time()
	}
	if c.h.Started.IsZero() || !c.h.Started.Before(since) {
		return since, false, true
	}
	// Thinning keeps the newest reading of a bucket, so the oldest kept
	// reading can be a little younger than the history; only readings
	// dropped for age (history_days) leave the value's past unknown.
	if since.Sub(c.h.Started) <= 48*time.Hour {
		return c.h.Started, false, true
	}
	return since, true, true
}

// cumulativeIn is how much a cumulative seconds field grew in the window.
func (c *evalContext) cumulativeIn(f field, window time.Duration) time.Duration {
	n := len(c.h.Samples)
	cur, ok := c.h.Samples[n-1].get(f)
	if !ok {
		return 0
	}
	base := int64(0)
	first := c.windowStart(window)
	if !c.h.Samples[first].Time().After(c.now.Add(-window)) {
		base, _ = c.h.Samples[first].get(f)
	}
	if cur <= base {
		return 0
	}
	return time.Duration(cur-base) * time.Second
}

// excursions counts the runs of readings at or above the warning limit (or
// the critical limit, when only that is known) in the window, and the
// highest temperature in it.
func (c *evalContext) excursions(window time.Duration) (peak int64, runs int) {
	hot := false
	start := c.now.Add(-window)
	for i := range c.h.Samples {
		s := &c.h.Samples[i]
		if s.Time().Before(start) {
			continue
		}
		m, ok := s.get(fTempMaxC)
		if !ok {
			hot = false
			continue
		}
		peak = max(peak, m)
		limit, okL := s.get(fTempWarnC)
		if !okL || limit <= 0 {
			limit, okL = s.get(fTempCritC)
		}
		isHot := okL && limit > 0 && m >= limit
		if isHot && !hot {
			runs++
		}
		hot = isHot
	}
	return peak, runs
}

// span says how long ago a rise began: "in 6 hours", or, for captures
// without times, "between captures 1 and 3".
func (c *evalContext) span(since time.Time) string {
	if c.synthetic {
		return fmt.Sprintf("between captures %d and %d", c.captureNo(since), c.captureNo(c.now))
	}
	return "in " + humanDuration(c.now.Sub(since))
}

func (c *evalContext) ago(t time.Time) string {
	if c.synthetic {
		return fmt.Sprintf("%d captures", c.captureNo(c.now)-c.captureNo(t))
	}
	return humanDuration(c.now.Sub(t))
}

func (c *evalContext) within(window time.Duration) string {
	if c.synthetic {
		return "over these captures"
	}
	return "in the last " + humanDuration(window)
}

func (c *evalContext) captureNo(t time.Time) int {
	return int(t.Sub(c.base)/time.Hour) + 1
}

// humanDuration writes a duration the way a person says it: "45 minutes",
// "6 hours", "3 days", "2 years".
func humanDuration(d time.Duration) string {
	const day = 24 * time.Hour
	switch {
	case d < time.Minute:
		return "under a minute"
	case d < time.Hour:
		n := int64(d / time.Minute)
		return fmt.Sprintf("%d %s", n, plural(n, "minute", "minutes"))
	case d < 3*time.Hour:
		h, m := int64(d/time.Hour), int64(d%time.Hour/time.Minute)
		if m == 0 {
			return fmt.Sprintf("%d %s", h, plural(h, "hour", "hours"))
		}
		return fmt.Sprintf("%d %s %d %s", h, plural(h, "hour", "hours"), m, plural(m, "minute", "minutes"))
	case d < 48*time.Hour:
		n := int64((d + 30*time.Minute) / time.Hour)
		return fmt.Sprintf("%d %s", n, plural(n, "hour", "hours"))
	case d < 60*day:
		n := int64((d + 12*time.Hour) / day)
		return fmt.Sprintf("%d %s", n, plural(n, "day", "days"))
	case d < 730*day:
		n := int64(d / (30 * day))
		return fmt.Sprintf("%d %s", n, plural(n, "month", "months"))
	default:
		n := int64(d / (365 * day))
		return fmt.Sprintf("%d %s", n, plural(n, "year", "years"))
	}
}

func plural(n int64, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

func them(n int64) string {
	if n == 1 {
		return "it"
	}
	return "them"
}
