package event

import (
	"bytes"
	"errors"
	"math/rand"
	"sort"
	"strings"
	"testing"
	"time"
)

func sampleAlert() *Event {
	return &Event{
		ID:       NewID(),
		Type:     TypeAlert,
		Severity: SeverityError,
		Created:  time.Date(2025, 3, 1, 12, 0, 0, 123456789, time.UTC),
		SystemID: "SYS-0001",
		Payload: map[string]any{
			"source":    "drive",
			"condition": "drive_risk",
			"state":     "raised",
			"message":   "pending sectors rose from 0 to 24 in 6 hours",
			"drive": map[string]any{
				"serial":   "ZA1234",
				"risk":     "warn",
				"counters": map[string]any{"pending_sectors": uint64(24)},
				"reasons":  []string{"pending sectors rose from 0 to 24 in 6 hours"},
			},
			"value":     24.0,
			"threshold": 0,
		},
	}
}

func TestIDsAreUniqueAndOrdered(t *testing.T) {
	// A clock that stands still and then steps back must not break order.
	base := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	var ticks int
	now := func() time.Time {
		ticks++
		switch {
		case ticks < 500:
			return base
		case ticks < 1000:
			return base.Add(-time.Hour) // clock stepped back
		default:
			return base.Add(time.Duration(ticks) * time.Millisecond)
		}
	}
	g := NewIDGenerator(now, rand.New(rand.NewSource(1)))
	var ids []string
	seen := map[string]bool{}
	for i := 0; i < 2000; i++ {
		id := g.New()
		if seen[id] {
			t.Fatalf("duplicate id %s", id)
		}
		seen[id] = true
		if _, err := ParseID(id); err != nil {
			t.Fatalf("generated id %s does not parse: %v", id, err)
		}
		ids = append(ids, id)
	}
	if !sort.StringsAreSorted(ids) {
		t.Fatal("ids are not in creation order")
	}
	ts, _ := ParseID(ids[0])
	if !ts.Equal(base) {
		t.Fatalf("id time %v, want %v", ts, base)
	}
}

func TestFormatAndParseID(t *testing.T) {
	ms := uint64(time.Date(2030, 6, 1, 0, 0, 0, 0, time.UTC).UnixMilli())
	id := FormatID(ms, [10]byte{1, 2, 3, 4, 5, 6, 7, 8, 9, 10})
	got, err := ParseID(id)
	if err != nil || uint64(got.UnixMilli()) != ms {
		t.Fatalf("ParseID(%s) = %v, %v", id, got, err)
	}
	for _, bad := range []string{"", "short", strings.Repeat("0", 25), "8" + strings.Repeat("0", 25), strings.Repeat("0", 25) + "U", strings.Repeat("0", 25) + "a"} {
		if _, err := ParseID(bad); err == nil {
			t.Errorf("ParseID(%q) accepted a bad id", bad)
		}
	}
}

func TestMarshalRoundTripAndDeterminism(t *testing.T) {
	e := sampleAlert()
	a, err := Marshal(e)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 20; i++ { // map iteration order must not matter
		b, err := Marshal(e)
		if err != nil || !bytes.Equal(a, b) {
			t.Fatalf("encoding not deterministic")
		}
	}
	got, err := Unmarshal(a)
	if err != nil {
		t.Fatal(err)
	}
	if got.ID != e.ID || got.Type != e.Type || got.Severity != e.Severity || !got.Created.Equal(e.Created) || got.SystemID != e.SystemID {
		t.Fatalf("round trip changed the envelope: %+v", got)
	}
	again, err := Marshal(got)
	if err != nil || !bytes.Equal(again, a) {
		t.Fatalf("decoded event re-encodes differently: %v", err)
	}
}

func TestUndeclaredFieldsAreRefused(t *testing.T) {
	cases := map[string]func(e *Event){
		"top level":       func(e *Event) { e.Payload["hostname"] = "db01.customer.example" },
		"nested object":   func(e *Event) { e.Payload["drive"].(map[string]any)["owner"] = "finance" },
		"in a list":       func(e *Event) { e.Payload["drives"] = []any{map[string]any{"serial": "x", "location": "rack 4"}} },
		"deep in counter": func(e *Event) { e.Payload["drive"].(map[string]any)["counters"].(map[string]any)["bogus"] = 1 },
	}
	for name, mutate := range cases {
		t.Run(name, func(t *testing.T) {
			e := sampleAlert()
			mutate(e)
			_, err := Marshal(e)
			if !errors.Is(err, ErrUndeclaredField) {
				t.Fatalf("got %v, want ErrUndeclaredField", err)
			}
			var fe *FieldError
			if !errors.As(err, &fe) || fe.Field == "" {
				t.Fatalf("error %v does not name the field", err)
			}
		})
	}
	e := sampleAlert()
	e.Type = "marketing"
	if err := e.Validate(); !errors.Is(err, ErrUndeclaredField) {
		t.Fatalf("unknown type: %v", err)
	}
}

func TestBadValuesAreRefused(t *testing.T) {
	cases := map[string]func(e *Event){
		"string for bool":   func(e *Event) { e.Payload["drive"].(map[string]any)["smart_passed"] = "yes" },
		"text for number":   func(e *Event) { e.Payload["value"] = "hot" },
		"nil":               func(e *Event) { e.Payload["message"] = nil },
		"long text":         func(e *Event) { e.Payload["message"] = strings.Repeat("x", 2000) },
		"bad utf8":          func(e *Event) { e.Payload["message"] = "\xff\xfe" },
		"severity":          func(e *Event) { e.Severity = 9 },
		"no system id":      func(e *Event) { e.SystemID = "" },
		"space in sys id":   func(e *Event) { e.SystemID = "a b" },
		"bad id":            func(e *Event) { e.ID = "nope" },
		"zero time":         func(e *Event) { e.Created = time.Time{} },
		"float for int":     func(e *Event) { e.Payload["suppressed"] = 1.5 },
		"list for object":   func(e *Event) { e.Payload["sensor"] = []string{"a"} },
		"object for string": func(e *Event) { e.Payload["message"] = map[string]any{} },
	}
	for name, mutate := range cases {
		t.Run(name, func(t *testing.T) {
			e := sampleAlert()
			mutate(e)
			if err := e.Validate(); err == nil {
				t.Fatal("accepted")
			}
		})
	}
}

func TestUnmarshalRefusesTrailingAndDuplicate(t *testing.T) {
	b, err := Marshal(sampleAlert())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Unmarshal(append(b, 0)); err == nil {
		t.Fatal("trailing byte accepted")
	}
	if _, err := Unmarshal(b[:len(b)-1]); err == nil {
		t.Fatal("truncated event accepted")
	}
	// A map with key 1 twice.
	dup := []byte{0xa2, 0x01, 0x61, 'a', 0x01, 0x61, 'b'}
	if _, err := Unmarshal(dup); err == nil {
		t.Fatal("duplicate key accepted")
	}
}

func TestRegistryIsWellFormed(t *testing.T) {
	var walk func(path string, fs []Field)
	walk = func(path string, fs []Field) {
		seen := map[string]bool{}
		for _, f := range fs {
			if f.Name == "" || f.Description == "" {
				t.Errorf("%s: field %q without name or description", path, f.Name)
			}
			if seen[f.Name] {
				t.Errorf("%s: field %q twice", path, f.Name)
			}
			seen[f.Name] = true
			if f.Kind == KindObject || (f.Kind == KindList && f.Elem == KindObject) {
				if len(f.Fields) == 0 {
					t.Errorf("%s.%s: object without fields", path, f.Name)
				}
				walk(path+"."+f.Name, f.Fields)
			}
			if f.Kind == KindList && f.Elem == "" {
				t.Errorf("%s.%s: list without element kind", path, f.Name)
			}
		}
	}
	types := map[Type]bool{}
	for _, s := range Registry() {
		types[s.Type] = true
		walk(string(s.Type), s.Fields)
	}
	for _, typ := range []Type{TypeAlert, TypeHealthReport, TypeConfiguration, TypeLicensing, TypeCommandResult, TypeFileChunk} {
		if !types[typ] {
			t.Errorf("type %s is not declared", typ)
		}
	}
}

func FuzzEventDecode(f *testing.F) {
	b, _ := Marshal(sampleAlert())
	f.Add(b)
	h := &Event{ID: NewID(), Type: TypeHealthReport, Severity: SeverityInfo, Created: time.Unix(1700000000, 0), SystemID: "S1",
		Payload: map[string]any{"drives": []any{map[string]any{"serial": "A", "temperature_c": 31.5}}, "uptime_seconds": 5}}
	hb, _ := Marshal(h)
	f.Add(hb)
	f.Add([]byte{0xa0})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		e, err := Unmarshal(data)
		if err != nil {
			return
		}
		// Whatever decodes must validate and encode again, stably.
		out, err := Marshal(e)
		if err != nil {
			t.Fatalf("decoded event does not re-encode: %v", err)
		}
		e2, err := Unmarshal(out)
		if err != nil {
			t.Fatalf("re-encoded event does not decode: %v", err)
		}
		out2, _ := Marshal(e2)
		if !bytes.Equal(out, out2) {
			t.Fatal("encoding is not stable")
		}
	})
}
