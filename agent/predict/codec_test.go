package predict

import (
	"encoding/binary"
	"errors"
	"hash/crc32"
	"reflect"
	"testing"
	"time"

	"github.com/dcagent/dcagent/hal"
)

// sampleHistory is a realistic history: a drive degrading over a month,
// with fields appearing and disappearing.
func sampleHistory() *History {
	h := &History{Key: "ZA1B2C3", Identity: Identity{Serial: "ZA1B2C3", Model: "TEST HDD 4TB", WWN: "5000c500a1b2c3d4"}}
	for i := 0; i < 24*30; i++ {
		s := ataDrive("ZA1B2C3")
		s.TemperatureC = hal.F64(float64(30 + i%11))
		s.TempWarnC = hal.F64(60)
		if i > 500 {
			s.Counters.PendingSectors = hal.U64(uint64(i - 500))
			s.Counters.ReallocatedSectors = hal.U64(uint64((i - 500) / 3))
		}
		if i%97 == 0 {
			s.Counters.UDMACRCErrors = nil // a reading that lacked the attribute
		}
		if i == 700 {
			s.SmartPassed = ptrBool(false)
			s.FailingAttributes = []hal.AttributeFailure{{ID: 5, When: "now"}}
		}
		h.Add(&s, t0.Add(time.Duration(i)*time.Hour))
	}
	h.compact(t0.Add(24*30*time.Hour), 365*24*time.Hour, 1)
	return h
}

func TestHistoryRoundTrip(t *testing.T) {
	h := sampleHistory()
	b := h.encode()
	got, err := DecodeHistory(b)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, h) {
		t.Fatalf("decoded history differs:\n got %+v\nwant %+v", got.Samples[:2], h.Samples[:2])
	}
	t.Logf("%d samples in %d bytes (%.1f bytes a sample)", len(h.Samples), len(b), float64(len(b))/float64(len(h.Samples)))

	empty := &History{Key: "E", Started: t0}
	got, err = DecodeHistory(empty.encode())
	if err != nil || got.Key != "E" || len(got.Samples) != 0 || !got.Started.Equal(t0) {
		t.Errorf("empty history: %+v %v", got, err)
	}
}

// TestDecodeRejects: every truncation of a good file is an error, never a
// panic, and every error is a *CorruptError.
func TestDecodeRejects(t *testing.T) {
	b := sampleHistory().encode()
	for n := 0; n < len(b); n++ {
		_, err := DecodeHistory(b[:n])
		var ce *CorruptError
		if !errors.As(err, &ce) {
			t.Fatalf("truncated to %d bytes: error %v is not a *CorruptError", n, err)
		}
	}
}

// FuzzHistoryDecode: the decoder never panics, never allocates without
// bound, and what it accepts encodes back to a history it reads the same.
func FuzzHistoryDecode(f *testing.F) {
	// Seeds stay small: the fuzzer minimises every new input it finds, and
	// minimising a history of hundreds of samples takes most of a short run.
	small := &History{Key: "ZA1B2C3", Identity: Identity{Serial: "ZA1B2C3", Model: "TEST HDD 4TB"}}
	for i := 0; i < 6; i++ {
		s := ataDrive("ZA1B2C3")
		s.TempWarnC = hal.F64(60)
		s.TemperatureC = hal.F64(float64(55 + 2*i))
		s.Counters.PendingSectors = hal.U64(uint64(i * i))
		if i == 3 {
			s.Counters.UDMACRCErrors = nil
		}
		small.Add(&s, t0.Add(time.Duration(i)*time.Hour))
	}
	f.Add(small.encode())
	f.Add((&History{Key: "E"}).encode())
	one := &History{Key: "N1"}
	s := nvmeDrive("N1")
	one.Add(&s, t0)
	f.Add(one.encode())
	f.Add([]byte("DCPH\x01"))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		checkDecode(t, data)
		// Most mutations break the checksum; decode each input a second
		// time with its checksum made right, so the fuzzer reaches the
		// parser behind it.
		if len(data) >= 4 {
			fixed := append([]byte(nil), data[:len(data)-4]...)
			fixed = binary.LittleEndian.AppendUint32(fixed, crc32.Checksum(fixed, castagnoli))
			checkDecode(t, fixed)
		}
	})
}

func checkDecode(t *testing.T, data []byte) {
	h, err := DecodeHistory(data)
	{
		if err != nil {
			var ce *CorruptError
			if !errors.As(err, &ce) || !errors.Is(err, ErrCorrupt) {
				t.Fatalf("error %v is not a *CorruptError", err)
			}
			return
		}
		again, err := DecodeHistory(h.encode())
		if err != nil {
			t.Fatalf("re-encoded history does not decode: %v", err)
		}
		if !reflect.DeepEqual(again, h) {
			t.Fatalf("re-encoded history differs")
		}
		// An accepted history must be usable for prediction.
		if len(h.Samples) > 0 {
			c := evalContext{cfg: ptrCfg(), h: h, snap: &hal.DriveSnapshot{}, now: h.last().Time()}
			_ = c.findings().risk()
		}
	}
}
