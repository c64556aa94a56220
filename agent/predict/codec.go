package predict

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"time"
)

// The history file format, version 1 (all integers are Go varints):
//
//	"DCPH" version(1 byte)
//	key, serial, model, wwn    each uvarint length + bytes
//	started                    varint Unix seconds
//	count                      uvarint number of samples
//	count × sample:
//	    dt                     uvarint seconds since the previous sample
//	                           (the first: since started)
//	    changed                uvarint bit mask of fields that differ from
//	                           the previous sample (the first: from absent)
//	    per changed field, in field order:
//	        uvarint 0 = now absent, else zigzag(value - previous) + 1,
//	        where an absent previous value counts as 0
//	crc32c                     4 bytes little-endian over everything before
//
// Most readings change nothing but the time and the temperature, so a
// sample costs 4 to 6 bytes.
const (
	fileMagic     = "DCPH"
	formatVersion = 1
	// MaxHistoryBytes caps one drive's encoded history; compaction thins
	// harder until the file fits.
	MaxHistoryBytes = 64 << 10
	// maxDecodeBytes is the largest file the decoder reads: more than
	// MaxHistoryBytes so that a file from a version with a larger cap is
	// still read, small enough that a bad file cannot exhaust memory.
	maxDecodeBytes = 1 << 20
	maxSamples     = 1 << 16
	maxStringLen   = 256
	// maxUnix is 9999-12-31; times beyond it are corrupt.
	maxUnix = 253402300799
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// encode writes the history in the format above.
func (h *History) encode() []byte {
	buf := make([]byte, 0, 64+len(h.Samples)*8)
	buf = append(buf, fileMagic...)
	buf = append(buf, formatVersion)
	for _, s := range []string{h.Key, h.Identity.Serial, h.Identity.Model, h.Identity.WWN} {
		if len(s) > maxStringLen {
			s = s[:maxStringLen]
		}
		buf = binary.AppendUvarint(buf, uint64(len(s)))
		buf = append(buf, s...)
	}
	started := h.Started.Unix()
	if h.Started.IsZero() {
		started = 0
	}
	if len(h.Samples) > 0 && (h.Started.IsZero() || h.Samples[0].unix < started) {
		started = h.Samples[0].unix
	}
	started = max(0, min(started, maxUnix))
	buf = binary.AppendVarint(buf, started)
	buf = binary.AppendUvarint(buf, uint64(len(h.Samples)))
	prevTime := started
	var prev Sample
	for i := range h.Samples {
		s := &h.Samples[i]
		t := min(s.unix, maxUnix)
		if t < prevTime {
			t = prevTime // Add keeps samples in order; never write a negative step
		}
		buf = binary.AppendUvarint(buf, uint64(t-prevTime))
		prevTime = t
		var changed uint64
		for f := field(0); f < numFields; f++ {
			if s.has(f) != prev.has(f) || s.v[f] != prev.v[f] {
				changed |= 1 << f
			}
		}
		buf = binary.AppendUvarint(buf, changed)
		for f := field(0); f < numFields; f++ {
			if changed&(1<<f) == 0 {
				continue
			}
			if !s.has(f) {
				buf = binary.AppendUvarint(buf, 0)
				continue
			}
			buf = binary.AppendUvarint(buf, zigzag(int64(s.v[f])-int64(prev.v[f]))+1)
		}
		prev = *s
		// The decoder takes an absent field's value as 0; do the same here
		// so that the deltas agree.
		for f := field(0); f < numFields; f++ {
			if !prev.has(f) {
				prev.v[f] = 0
			}
		}
	}
	return binary.LittleEndian.AppendUint32(buf, crc32.Checksum(buf, castagnoli))
}

func zigzag(v int64) uint64   { return uint64(v<<1) ^ uint64(v>>63) }
func unzigzag(u uint64) int64 { return int64(u>>1) ^ -int64(u&1) }

// DecodeHistory reads a history file's bytes. Any defect (truncation, a bad
// checksum, an out-of-range value) gives a *CorruptError, never a panic.
func DecodeHistory(b []byte) (*History, error) {
	d := decoder{b: b}
	if len(b) > maxDecodeBytes {
		return nil, d.fail("file is %d bytes, more than the %d a history can be", len(b), maxDecodeBytes)
	}
	if len(b) < len(fileMagic)+1+4 {
		return nil, d.fail("file is %d bytes, too short for a history", len(b))
	}
	if string(b[:len(fileMagic)]) != fileMagic {
		return nil, d.fail("not a history file (magic %q)", b[:len(fileMagic)])
	}
	if v := b[len(fileMagic)]; v != formatVersion {
		return nil, &CorruptError{Offset: len(fileMagic), Reason: fmt.Sprintf("format version %d is not one this agent reads (%d)", v, formatVersion)}
	}
	body := b[:len(b)-4]
	if want, got := binary.LittleEndian.Uint32(b[len(b)-4:]), crc32.Checksum(body, castagnoli); want != got {
		return nil, &CorruptError{Offset: len(b) - 4, Reason: fmt.Sprintf("checksum mismatch (stored %08x, computed %08x): the file was damaged", want, got)}
	}
	d.b = body
	d.off = len(fileMagic) + 1

	h := &History{}
	var strs [4]string
	for i := range strs {
		n, err := d.uvarint("string length")
		if err != nil {
			return nil, err
		}
		if n > maxStringLen || n > uint64(len(d.b)-d.off) {
			return nil, d.fail("string of %d bytes", n)
		}
		strs[i] = string(d.b[d.off : d.off+int(n)])
		d.off += int(n)
	}
	h.Key, h.Identity.Serial, h.Identity.Model, h.Identity.WWN = strs[0], strs[1], strs[2], strs[3]
	started, err := d.varint("start time")
	if err != nil {
		return nil, err
	}
	if started < 0 || started > maxUnix {
		return nil, d.fail("start time %d out of range", started)
	}
	h.Started = time.Unix(started, 0).UTC()
	count, err := d.uvarint("sample count")
	if err != nil {
		return nil, err
	}
	if count > maxSamples {
		return nil, d.fail("%d samples, more than %d", count, maxSamples)
	}
	// Each sample takes at least two bytes; a count the rest of the file
	// cannot hold is corrupt, and checking it first bounds the allocation.
	if count > uint64(len(d.b)-d.off)/2 {
		return nil, d.fail("%d samples cannot fit in the %d bytes left", count, len(d.b)-d.off)
	}
	h.Samples = make([]Sample, 0, count)
	t := started
	var prev Sample
	for i := uint64(0); i < count; i++ {
		dt, err := d.uvarint("time step")
		if err != nil {
			return nil, err
		}
		if dt > maxUnix || t+int64(dt) > maxUnix {
			return nil, d.fail("sample %d: time out of range", i)
		}
		t += int64(dt)
		changed, err := d.uvarint("changed fields")
		if err != nil {
			return nil, err
		}
		if changed>>numFields != 0 {
			return nil, d.fail("sample %d: unknown fields %#x", i, changed>>numFields)
		}
		s := prev
		s.unix = t
		for f := field(0); f < numFields; f++ {
			if changed&(1<<f) == 0 {
				continue
			}
			code, err := d.uvarint("value")
			if err != nil {
				return nil, err
			}
			if code == 0 {
				s.v[f] = 0
				s.present &^= 1 << f
				continue
			}
			delta := unzigzag(code - 1)
			if delta > 2*valueLimit || delta < -2*valueLimit {
				return nil, d.fail("sample %d: %s changes by %d", i, fieldInfo[f].name, delta)
			}
			v := int64(prev.v[f]) + delta
			if v > valueLimit || v < -valueLimit {
				return nil, d.fail("sample %d: %s is %d, out of range", i, fieldInfo[f].name, v)
			}
			s.v[f] = int32(v)
			s.present |= 1 << f
		}
		h.Samples = append(h.Samples, s)
		prev = s
	}
	if d.off != len(d.b) {
		return nil, d.fail("%d bytes after the last sample", len(d.b)-d.off)
	}
	return h, nil
}

type decoder struct {
	b   []byte
	off int
}

func (d *decoder) fail(format string, args ...any) *CorruptError {
	return &CorruptError{Offset: d.off, Reason: fmt.Sprintf(format, args...)}
}

func (d *decoder) uvarint(what string) (uint64, error) {
	v, n := binary.Uvarint(d.b[d.off:])
	if n <= 0 {
		return 0, d.fail("%s: truncated or overlong number", what)
	}
	d.off += n
	return v, nil
}

func (d *decoder) varint(what string) (int64, error) {
	v, n := binary.Varint(d.b[d.off:])
	if n <= 0 {
		return 0, d.fail("%s: truncated or overlong number", what)
	}
	d.off += n
	return v, nil
}
