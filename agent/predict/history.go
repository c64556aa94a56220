package predict

import (
	"math"
	"time"

	"github.com/dcagent/dcagent/hal"
)

// field names one value kept per sample. The order is part of the file
// format: append new fields at the end, never reorder.
type field uint8

const (
	fReallocated field = iota
	fPending
	fOfflineUnc
	fReportedUnc
	fCmdTimeouts
	fUDMACRC
	fSpinRetries
	fEndToEnd
	fCritWarning
	fMediaErrors
	fPctUsed
	fAvailSpare
	fSpareThresh
	fGrownDefects
	fNonMedium
	fUncorrected
	fLinkErrors
	fPowerOnHours
	fSmartPassed // 1 passed, 0 failed
	fTempC       // the reading, whole °C
	fTempMaxC    // the highest reading the sample stands for (after thinning)
	fTempWarnC   // the drive's own limits at the time
	fTempCritC
	fAboveWarnSecs // cumulative seconds above the warning limit since the history began
	fAboveCritSecs // cumulative seconds above the critical limit
	fFailingNow    // number of attributes failing now
	fFailedPast    // number of attributes that failed in the past
	numFields
)

// fieldInfo says how to read a field from a snapshot and how to name it.
var fieldInfo = [numFields]struct {
	name    string // in reasons
	counter func(c *hal.Counters) *uint64
}{
	fReallocated:   {"reallocated sectors (ATA 5)", func(c *hal.Counters) *uint64 { return c.ReallocatedSectors }},
	fPending:       {"pending sectors (ATA 197)", func(c *hal.Counters) *uint64 { return c.PendingSectors }},
	fOfflineUnc:    {"offline uncorrectable sectors (ATA 198)", func(c *hal.Counters) *uint64 { return c.OfflineUncorrectable }},
	fReportedUnc:   {"reported uncorrectable errors (ATA 187)", func(c *hal.Counters) *uint64 { return c.ReportedUncorrectable }},
	fCmdTimeouts:   {"command timeouts (ATA 188)", func(c *hal.Counters) *uint64 { return c.CommandTimeouts }},
	fUDMACRC:       {"UDMA CRC errors (ATA 199)", func(c *hal.Counters) *uint64 { return c.UDMACRCErrors }},
	fSpinRetries:   {"spin-up retries (ATA 10)", func(c *hal.Counters) *uint64 { return c.SpinRetries }},
	fEndToEnd:      {"end-to-end data path errors (ATA 184)", func(c *hal.Counters) *uint64 { return c.EndToEndErrors }},
	fCritWarning:   {"NVMe critical warning", func(c *hal.Counters) *uint64 { return c.CriticalWarning }},
	fMediaErrors:   {"NVMe media errors", func(c *hal.Counters) *uint64 { return c.MediaErrors }},
	fPctUsed:       {"NVMe percentage used", func(c *hal.Counters) *uint64 { return c.PercentageUsed }},
	fAvailSpare:    {"NVMe available spare", func(c *hal.Counters) *uint64 { return c.AvailableSpare }},
	fSpareThresh:   {"NVMe available spare threshold", func(c *hal.Counters) *uint64 { return c.AvailableSpareThreshold }},
	fGrownDefects:  {"SAS grown defects", func(c *hal.Counters) *uint64 { return c.GrownDefects }},
	fNonMedium:     {"SAS non-medium errors", func(c *hal.Counters) *uint64 { return c.NonMediumErrors }},
	fUncorrected:   {"SAS uncorrected errors", func(c *hal.Counters) *uint64 { return c.UncorrectedErrors }},
	fLinkErrors:    {"SAS link errors", func(c *hal.Counters) *uint64 { return c.LinkErrors }},
	fPowerOnHours:  {name: "power-on hours"},
	fSmartPassed:   {name: "SMART overall health"},
	fTempC:         {name: "temperature"},
	fTempMaxC:      {name: "peak temperature"},
	fTempWarnC:     {name: "warning temperature limit"},
	fTempCritC:     {name: "critical temperature limit"},
	fAboveWarnSecs: {name: "time above the warning temperature"},
	fAboveCritSecs: {name: "time above the critical temperature"},
	fFailingNow:    {name: "attributes failing now"},
	fFailedPast:    {name: "attributes failed in the past"},
}

// valueLimit bounds every stored value: values are kept as int32 in memory
// (a year of a drive's history is a few hundred samples, and sixty drives
// must fit in a small daemon), and no counter a drive reports comes near
// two billion. A larger value is kept as valueLimit.
const valueLimit = int64(1)<<31 - 1

func clampValue(v int64) int64 {
	if v > valueLimit {
		return valueLimit
	}
	if v < -valueLimit {
		return -valueLimit
	}
	return v
}

func clampU64(v uint64) int64 {
	if v > uint64(valueLimit) {
		return valueLimit
	}
	return int64(v)
}

// Sample is one reading of one drive, reduced to the values prediction
// uses, at one-second resolution.
type Sample struct {
	unix    int64 // seconds
	present uint32
	v       [numFields]int32
}

// Time is when the reading was taken.
func (s *Sample) Time() time.Time { return time.Unix(s.unix, 0).UTC() }

// get returns a field's value and whether the drive reported it.
func (s *Sample) get(f field) (int64, bool) {
	return int64(s.v[f]), s.present&(1<<f) != 0
}

func (s *Sample) has(f field) bool { return s.present&(1<<f) != 0 }

func (s *Sample) set(f field, v int64) {
	s.v[f] = int32(clampValue(v))
	s.present |= 1 << f
}

func (s *Sample) setU64(f field, p *uint64) {
	if p != nil {
		s.set(f, clampU64(*p))
	}
}

func (s *Sample) setF64(f field, p *float64) {
	if p == nil || math.IsNaN(*p) || math.IsInf(*p, 0) {
		return
	}
	x := math.Round(*p)
	if x > float64(valueLimit) || x < -float64(valueLimit) {
		return
	}
	s.set(f, int64(x))
}

// sampleOf reduces a snapshot to a sample at time t (cumulative
// temperature fields are filled in by History.Add).
func sampleOf(snap *hal.DriveSnapshot, t time.Time) Sample {
	s := Sample{unix: t.Unix()}
	for f := field(0); f < numFields; f++ {
		if get := fieldInfo[f].counter; get != nil {
			s.setU64(f, get(&snap.Counters))
		}
	}
	// Seagate packs three 16-bit counters into 188; the low word is the
	// total number of timeouts (see the package doc).
	if p := snap.Counters.CommandTimeouts; p != nil && *p > 0xFFFF {
		s.set(fCmdTimeouts, int64(*p&0xFFFF))
	}
	s.setU64(fPowerOnHours, snap.PowerOnHours)
	if snap.SmartPassed != nil {
		if *snap.SmartPassed {
			s.set(fSmartPassed, 1)
		} else {
			s.set(fSmartPassed, 0)
		}
	}
	s.setF64(fTempC, snap.TemperatureC)
	if v, ok := s.get(fTempC); ok {
		s.set(fTempMaxC, v)
	}
	s.setF64(fTempWarnC, snap.TempWarnC)
	s.setF64(fTempCritC, snap.TempCritC)
	var now, past int64
	for _, a := range snap.FailingAttributes {
		if a.When == "past" {
			past++
		} else {
			now++
		}
	}
	s.set(fFailingNow, now)
	s.set(fFailedPast, past)
	return s
}

// Identity is what tells one drive from another behind the same key.
type Identity struct {
	Serial string
	Model  string
	WWN    string
}

// History is one drive's readings over time, oldest first, thinned with
// age so that a year fits in a few kilobytes (see compact).
type History struct {
	Key      string // the drive key it is filed under (see DriveKey)
	Identity Identity
	// Started is when this history began: its first reading, which thinning
	// may since have dropped.
	Started time.Time
	Samples []Sample
}

// maxGap caps how long one interval between two readings counts towards
// time spent above a temperature limit, so that a week with the agent
// stopped is not counted as a week too hot.
const maxGap = 2 * time.Hour

// Add appends a reading taken at t. A reading at or before the last one
// replaces it (a clock stepped back, or a second reading in the same
// second), keeping the history in time order.
func (h *History) Add(snap *hal.DriveSnapshot, t time.Time) {
	s := sampleOf(snap, t)
	if h.Started.IsZero() {
		h.Started = s.Time()
	}
	if n := len(h.Samples); n > 0 && s.unix <= h.Samples[n-1].unix {
		old := h.Samples[n-1]
		s.unix = old.unix
		if pm, ok := old.get(fTempMaxC); ok {
			if m, ok := s.get(fTempMaxC); !ok || pm > m {
				s.set(fTempMaxC, pm)
			}
		}
		h.Samples = h.Samples[:n-1]
	}
	if n := len(h.Samples); n == 0 {
		s.set(fAboveWarnSecs, 0)
		s.set(fAboveCritSecs, 0)
	} else {
		prev := &h.Samples[n-1]
		gap := min(time.Duration(s.unix-prev.unix)*time.Second, maxGap)
		for _, c := range [...]struct{ cum, limit field }{{fAboveWarnSecs, fTempWarnC}, {fAboveCritSecs, fTempCritC}} {
			base, _ := prev.get(c.cum)
			s.set(c.cum, base+int64(hotSeconds(prev, &s, c.limit, gap)))
		}
	}
	h.Samples = append(h.Samples, s)
}

// hotSeconds is how much of the interval between a and b counts as spent
// at or above limit: all of it when both readings are, half when one is.
func hotSeconds(a, b *Sample, limit field, gap time.Duration) float64 {
	hot := func(s *Sample) bool {
		t, ok1 := s.get(fTempC)
		l, ok2 := s.get(limit)
		return ok1 && ok2 && l > 0 && t >= l
	}
	n := 0
	if hot(a) {
		n++
	}
	if hot(b) {
		n++
	}
	return gap.Seconds() * float64(n) / 2
}

// last is the newest sample; the history must not be empty.
func (h *History) last() *Sample { return &h.Samples[len(h.Samples)-1] }

// tier is one step of thinning: samples younger than maxAge keep one per
// bucket of width.
type tier struct {
	maxAge time.Duration
	width  time.Duration
}

var tiers = []tier{
	{48 * time.Hour, 10 * time.Minute},
	{14 * 24 * time.Hour, 3 * time.Hour},
	{90 * 24 * time.Hour, 12 * time.Hour},
	{math.MaxInt64, 48 * time.Hour},
}

// compact drops samples older than keep and thins the rest by age: within
// each bucket of its tier only the newest sample stays, carrying the
// bucket's highest temperature. Buckets are aligned to absolute time, so
// compacting twice gives the same result. factor widens every bucket, for
// the size cap.
func (h *History) compact(now time.Time, keep time.Duration, factor int64) {
	out := 0
	type bucketKey struct{ width, index int64 }
	var lastKey bucketKey
	nowUnix := now.Unix()
	keepSecs := int64(keep / time.Second)
	for i := range h.Samples {
		s := &h.Samples[i]
		age := nowUnix - s.unix
		if age > keepSecs {
			continue
		}
		var width time.Duration
		for _, t := range tiers {
			if time.Duration(age)*time.Second < t.maxAge {
				width = t.width
				break
			}
		}
		w := int64(width/time.Second) * factor
		key := bucketKey{w, floorDiv(s.unix, w)}
		if out > 0 && key == lastKey {
			prev := &h.Samples[out-1]
			if pm, ok := prev.get(fTempMaxC); ok {
				if m, ok := s.get(fTempMaxC); !ok || pm > m {
					s.set(fTempMaxC, pm)
				}
			}
			*prev = *s
			continue
		}
		if out != i {
			h.Samples[out] = *s
		}
		out++
		lastKey = key
	}
	// Clear the tail so dropped samples do not pin memory.
	clear(h.Samples[out:])
	h.Samples = h.Samples[:out]
}

func floorDiv(a, b int64) int64 {
	q := a / b
	if (a%b != 0) && ((a < 0) != (b < 0)) {
		q--
	}
	return q
}
