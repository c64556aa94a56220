package smartctl

import (
	"encoding/json"
	"errors"
	"math"
	"strings"
	"testing"

	"github.com/dcagent/dcagent/hal"
)

func TestGroupedUint(t *testing.T) {
	for _, c := range []struct {
		in   string
		want uint64
		ok   bool
	}{
		{"4,000,787,030,016 bytes [4.00 TB]", 4000787030016, true},
		{"4 000 787 030 016 bytes [4,00 TB]", 4000787030016, true},
		{"256.060.514.304 [256 GB]", 256060514304, true},
		{"500\u00a0107\u00a0862\u00a0016 [500 GB]", 500107862016, true},
		{"120-034-123-776 bytes [120 GB]", 120034123776, true},
		{"25,392", 25392, true},
		{"59 Celsius", 59, true},
		{"100%", 100, true},
		{"0", 0, true},
		{"18446744073709551615", math.MaxUint64, true},
		{"18446744073709551616", 0, false}, // one more than uint64 holds
		{"", 0, false},
		{"-5", 0, false},
		{"<not available>", 0, false},
	} {
		got, ok := groupedUint(c.in)
		if got != c.want || ok != c.ok {
			t.Errorf("groupedUint(%q) = %d, %v; want %d, %v", c.in, got, ok, c.want, c.ok)
		}
	}
}

func TestHexOrUint(t *testing.T) {
	for in, want := range map[string]uint64{"0x00": 0, "0x04": 4, "0x1f": 31, "12": 12} {
		if got, ok := hexOrUint(in); !ok || got != want {
			t.Errorf("hexOrUint(%q) = %d, %v", in, got, ok)
		}
	}
}

func TestAttrCount(t *testing.T) {
	for _, c := range []struct {
		name string
		a    ataAttr
		want uint64
		ok   bool
	}{
		{"plain", ataAttr{ID: 5, RawString: "1040", RawValue: 1040, HasValue: true}, 1040, true},
		{"48-bit maximum", ataAttr{ID: 5, RawString: "281474976710655", RawValue: 1<<48 - 1, HasValue: true}, 1<<48 - 1, true},
		{"48-bit from text only", ataAttr{ID: 197, RawString: "281474976710655"}, 1<<48 - 1, true},
		{"with vendor detail", ataAttr{ID: 5, RawString: "5670 (1 343)"}, 5670, true},
		{"Seagate 188 words, JSON", ataAttr{ID: 188, RawString: "0 0 5", RawValue: 5, HasValue: true}, 5, true},
		{"Seagate 188 words, low word of raw", ataAttr{ID: 188, RawString: "1 2 3", RawValue: 1<<32 | 2<<16 | 3, HasValue: true}, 3, true},
		{"Seagate 188 words, text", ataAttr{ID: 188, RawString: "1 2 3"}, 3, true},
		{"only the number", ataAttr{ID: 5, RawValue: 77, HasValue: true}, 77, true},
		{"negative", ataAttr{ID: 5, RawString: "-1"}, 0, false},
		{"nothing", ataAttr{ID: 5}, 0, false},
	} {
		got, ok := attrCount(c.a)
		if got != c.want || ok != c.ok {
			t.Errorf("%s: attrCount = %d, %v; want %d, %v", c.name, got, ok, c.want, c.ok)
		}
	}
}

// Seagate packs three 16-bit counters into 188 even where smartctl prints
// one number (ST14000NM001G: raw 131074 = 0x0000_0002_0002).
func TestSeagate188PlainRaw(t *testing.T) {
	a := ataAttr{ID: 188, RawString: "131074"}
	if v, _ := attrCountFor(a, "ST14000NM001G-2KJ103"); v != 2 {
		t.Errorf("Seagate 188 raw 131074 = %d timeouts, want 2", v)
	}
	if v, _ := attrCountFor(a, "WDC WD4000FYYZ-01UL1B0"); v != 131074 {
		t.Errorf("non-Seagate 188 raw 131074 = %d, want it whole", v)
	}
}

// The temperature raw of attribute 194 keeps the lifetime minimum and
// maximum in its high bytes: 0x002D00140024 is 36 °C (min 20, max 45).
func TestAttrTemperaturePacked(t *testing.T) {
	const raw = 0x002D00140024
	for _, c := range []struct {
		name string
		a    ataAttr
		want int64
		ok   bool
	}{
		{"string with min/max", ataAttr{ID: 194, RawString: "36 (Min/Max 20/45)", RawValue: raw, HasValue: true}, 36, true},
		{"value only", ataAttr{ID: 194, RawValue: raw, HasValue: true}, 36, true},
		{"rendered as one 48-bit number", ataAttr{ID: 194, RawString: "193274839076"}, 36, true},
		{"five-byte form", ataAttr{ID: 194, RawString: "31 (0 17 0 0 0)"}, 31, true},
		{"no sensor", ataAttr{ID: 194, RawString: "0", RawValue: 0, HasValue: true}, 0, false},
	} {
		got, ok := attrTemperature(c.a)
		if got != c.want || ok != c.ok {
			t.Errorf("%s: attrTemperature = %d, %v; want %d, %v", c.name, got, ok, c.want, c.ok)
		}
	}
	if uint64(raw) != 193274839076 {
		t.Fatal("test constant")
	}
}

// Seagate's error-rate attributes 1, 7 and 195 hold errors in the upper 16
// bits and operations in the lower 32: never a count as a whole.
func TestSeagateErrorRate(t *testing.T) {
	// 220698288 from the ST3000DM001 capture: 0 errors in 220698288 operations.
	if e, ops := SeagateErrorRate(220698288); e != 0 || ops != 220698288 {
		t.Errorf("SeagateErrorRate(220698288) = %d, %d", e, ops)
	}
	// 387418648463 = 0x5A_33F3_6F8F: 90 errors.
	if e, ops := SeagateErrorRate(387418648463); e != 90 || ops != 0x33F36F8F {
		t.Errorf("SeagateErrorRate(387418648463) = %d, %d", e, ops)
	}
	failing := ataAttr{ID: 7, Name: "Seek_Error_Rate", Value: 20, Thresh: 30, WhenFailed: "now", RawString: "387418648463"}
	if got := attrRawForReport(failing, "ST3000DM001-1ER166"); got != 90 {
		t.Errorf("Seagate 7 reported raw = %d, want 90 errors", got)
	}
	if got := attrRawForReport(failing, "TOSHIBA DT01ACA200"); got != 387418648463 {
		t.Errorf("non-Seagate 7 reported raw = %d, want the whole count", got)
	}
	// Through the text parser: a failing Seagate attribute 1.
	text := "smartctl 7.0 2019-05-21 r4916 [x86_64-linux] (local build)\n" +
		"Device Model:     ST3000DM001-1ER166\n" +
		"ID# ATTRIBUTE_NAME          FLAG     VALUE WORST THRESH TYPE      UPDATED  WHEN_FAILED RAW_VALUE\n" +
		"  1 Raw_Read_Error_Rate     0x000f   005   005   006    Pre-fail  Always   FAILING_NOW 4295190203\n"
	s, err := Parse([]byte(text))
	if err != nil {
		t.Fatal(err)
	}
	if len(s.FailingAttributes) != 1 || s.FailingAttributes[0].Raw != 1 {
		t.Errorf("failing attributes %+v, want attribute 1 with 1 error (4295190203 = 1<<32 + 223163)", s.FailingAttributes)
	}
}

// A value the drive does not report is nil; a reported 0 is a pointer to 0.
func TestAbsentIsNotZero(t *testing.T) {
	doc := `{"json_format_version":[1,0],"smartctl":{"version":[7,3],"exit_status":0},
	  "device":{"name":"/dev/sda","type":"sat","protocol":"ATA"},
	  "model_name":"Test Drive","smart_status":{"passed":true},
	  "ata_smart_attributes":{"table":[
	    {"id":5,"name":"Reallocated_Sector_Ct","value":100,"worst":100,"thresh":10,"when_failed":"","raw":{"value":0,"string":"0"}},
	    {"id":197,"name":"Current_Pending_Sector","value":100,"worst":100,"thresh":0,"when_failed":"","raw":{"value":3,"string":"3"}}]}}`
	s, err := Parse([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	c := s.Counters
	if c.ReallocatedSectors == nil || *c.ReallocatedSectors != 0 {
		t.Errorf("reported 0 reallocated: %v", c.ReallocatedSectors)
	}
	if c.PendingSectors == nil || *c.PendingSectors != 3 {
		t.Errorf("pending: %v", c.PendingSectors)
	}
	for name, p := range map[string]*uint64{
		"offline_uncorrectable": c.OfflineUncorrectable, "reported_uncorrectable": c.ReportedUncorrectable,
		"command_timeouts": c.CommandTimeouts, "udma_crc_errors": c.UDMACRCErrors, "media_errors": c.MediaErrors,
		"grown_defects": c.GrownDefects, "percentage_used": c.PercentageUsed,
	} {
		if p != nil {
			t.Errorf("%s = %d, want absent", name, *p)
		}
	}
	if s.TemperatureC != nil || s.PowerOnHours != nil || s.CapacityBytes != nil || s.RotationRPM != nil || s.TempWarnC != nil {
		t.Errorf("unreported values present: %+v", s)
	}
	// And in the JSON contract: absent keys, not zeros.
	b, _ := jsonMarshal(s)
	for _, key := range []string{"temperature_c", "power_on_hours", "capacity_bytes", "offline_uncorrectable", "media_errors"} {
		if strings.Contains(b, `"`+key+`"`) {
			t.Errorf("JSON has %q for an unreported value: %s", key, b)
		}
	}
	if !strings.Contains(b, `"reallocated_sectors":0`) {
		t.Errorf("JSON lost a reported 0: %s", b)
	}

	// smart_passed absent when the report has no verdict.
	s, err = Parse([]byte(`{"json_format_version":[1,0],"model_name":"X","smartctl":{"exit_status":0}}`))
	if err != nil || s.SmartPassed != nil {
		t.Errorf("no smart_status: %v, %v", s, err)
	}
}

// Huge values: wider than 64 bits (NVMe counters are 128-bit), negative,
// or not numbers at all, each noted and none fatal.
func TestJSONHugeAndNegativeValues(t *testing.T) {
	doc := `{"json_format_version":[1,0],"smartctl":{"version":[7,4],"exit_status":0},
	  "device":{"name":"/dev/nvme0","type":"nvme","protocol":"NVMe"},"model_name":"Big",
	  "nvme_smart_health_information_log":{"critical_warning":0,"temperature":40,"available_spare":-3,
	    "available_spare_threshold":"10","percentage_used":1.5,
	    "media_errors":340282366920938463463374607431768211455,"power_on_hours":1e3}}`
	s, err := Parse([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	c := s.Counters
	if c.MediaErrors == nil || *c.MediaErrors != math.MaxUint64 || !hasMessage(s.Messages, "does not fit in 64 bits") {
		t.Errorf("128-bit media errors: %v, %q", c.MediaErrors, s.Messages)
	}
	if c.AvailableSpare != nil || !hasMessage(s.Messages, "negative value -3") {
		t.Errorf("negative spare: %v, %q", c.AvailableSpare, s.Messages)
	}
	if c.AvailableSpareThreshold == nil || *c.AvailableSpareThreshold != 10 {
		t.Errorf("quoted number: %v", c.AvailableSpareThreshold)
	}
	if c.PercentageUsed != nil || !hasMessage(s.Messages, "not a whole number") {
		t.Errorf("fraction: %v", c.PercentageUsed)
	}
	if s.PowerOnHours == nil || *s.PowerOnHours != 1000 {
		t.Errorf("1e3 hours: %v", s.PowerOnHours)
	}
	for _, m := range s.Messages {
		if !strings.HasPrefix(m, "dcagent: ") {
			t.Errorf("parser note without prefix: %q", m)
		}
	}
}

// A field of an unexpected type is left out; the rest is read.
func TestJSONWrongTypeField(t *testing.T) {
	doc := `{"json_format_version":[1,0],"smartctl":{"exit_status":0},"model_name":["not","a","string"],
	  "serial_number":"S1","smart_status":{"passed":false}}`
	s, err := Parse([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	if s.Serial != "S1" || s.SmartPassed == nil || *s.SmartPassed || s.Model != "" {
		t.Errorf("snapshot %+v", s)
	}
	if !hasMessage(s.Messages, "model_name") {
		t.Errorf("no note about model_name: %q", s.Messages)
	}
}

func TestJSONFormatErrors(t *testing.T) {
	for _, c := range []struct {
		name, doc string
		err       error
		want      string
	}{
		{"major 0", `{"json_format_version":[0,1],"model_name":"X"}`, ErrUnsupportedFormat, "json_format_version 0.1"},
		{"major 2", `{"json_format_version":[2,0],"model_name":"X"}`, ErrUnsupportedFormat, "json_format_version 2.0"},
		{"no version", `{"model_name":"X"}`, ErrNotSmartctl, "without json_format_version"},
		{"array", `[{"json_format_version":[1,0]}]`, ErrNotSmartctl, "not the object"},
		{"truncated", `{"json_format_version":[1,0],"model_name":"X`, ErrMalformedJSON, "ends early"},
		{"bad byte", "{\"json_format_version\":[1,0],\n  \"model_name\" \"X\"}", ErrMalformedJSON, "byte offset 45 (line 2, column 16)"},
		{"white space", " \n\t ", ErrEmpty, "4 bytes of white space"},
		{"binary", "\x1f\x8b\x08\x00\x00\x00\x00", ErrNotSmartctl, "NUL byte"},
		{"other text", "hello\nworld\n", ErrNotSmartctl, "2 line(s)"},
	} {
		_, err := Parse([]byte(c.doc))
		if !errors.Is(err, c.err) || !strings.Contains(fmtErr(err), c.want) {
			t.Errorf("%s: got %v, want %v saying %q", c.name, err, c.err, c.want)
		}
	}
}

func fmtErr(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// Text printed before the JSON object (a warning on the same stream, a
// shell prompt) is kept as a message; text after it is noted.
func TestJSONStrayText(t *testing.T) {
	doc := "Warning: smartctl was run as a non-root user\n" +
		`{"json_format_version":[1,0],"smartctl":{"version":[7,5],"exit_status":0},"model_name":"X","serial_number":"S"}` +
		"\n$ \n"
	s, err := Parse([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	if s.Model != "X" || len(s.Messages) < 2 || s.Messages[0] != "Warning: smartctl was run as a non-root user" {
		t.Errorf("snapshot %+v", s)
	}
	if !hasMessage(s.Messages, "after the JSON object ignored") {
		t.Errorf("trailing text not noted: %q", s.Messages)
	}
	// An offset in a malformed document with stray text counts from the file's start.
	_, err = Parse([]byte("note\n{\"json_format_version\":[1,0],}"))
	if !errors.Is(err, ErrMalformedJSON) || !strings.Contains(err.Error(), "byte offset 34 (line 2, column 30)") {
		t.Errorf("malformed after stray text: %v", err)
	}
}

// The SCSI temperature moved: with -x, smartctl 7.3 and later put it in
// scsi_environmental_reports instead of temperature.
func TestJSONSCSIEnvironmentalTemperature(t *testing.T) {
	doc := `{"json_format_version":[1,0],"smartctl":{"version":[7,3],"exit_status":0},
	  "device":{"name":"/dev/sdb","type":"scsi","protocol":"SCSI"},"scsi_model_name":"SAMSUNG X",
	  "scsi_environmental_reports":{"temperature_2":{"parameter_code":1,"current":31},
	    "temperature_1":{"parameter_code":0,"current":27,"lifetime_maximum":54}},
	  "scsi_sas_port_1":{"phy_0":{"Invalid DWORD count":4,"Running disparity error count":4,
	    "Loss of DWORD synchronization count":1,"Phy reset problem count":2}},
	  "scsi_sas_port_2":{"phy_0":{"invalid_dword_count":1,"loss_of_dword_synchronization_count":0,"phy_reset_problem_count":0}}}`
	s, err := Parse([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	if s.TemperatureC == nil || *s.TemperatureC != 27 {
		t.Errorf("temperature %v, want 27 from temperature_1", s.TemperatureC)
	}
	if s.Protocol != hal.ProtocolSCSI || s.Model != "SAMSUNG X" {
		t.Errorf("snapshot %+v", s)
	}
	if s.Counters.LinkErrors == nil || *s.Counters.LinkErrors != 8 {
		t.Errorf("link errors %v, want 4+1+2+1 = 8 (running disparity is not counted)", s.Counters.LinkErrors)
	}
}

// A text report with the raw field at the 48-bit maximum and a negative one.
func TestTextRawExtremes(t *testing.T) {
	text := "smartctl 6.6 2016-05-31 r4324 [x86_64-linux] (local build)\n" +
		"=== START OF READ SMART DATA SECTION ===\n" +
		"ID# ATTRIBUTE_NAME          FLAGS    VALUE WORST THRESH FAIL RAW_VALUE\n" +
		"  5 Reallocated_Sector_Ct   PO--CK   100   100   010    -    281474976710655\n" +
		"197 Current_Pending_Sector  -O--C-   100   100   000    -    -1\n" +
		"  9 Power_On_Minutes        -O--CK   099   099   000    -    6000\n"
	s, err := Parse([]byte(text))
	if err != nil {
		t.Fatal(err)
	}
	if s.Counters.ReallocatedSectors == nil || *s.Counters.ReallocatedSectors != 1<<48-1 {
		t.Errorf("48-bit raw: %v", s.Counters.ReallocatedSectors)
	}
	if s.Counters.PendingSectors != nil || !hasMessage(s.Messages, "attribute 197") {
		t.Errorf("negative raw: %v, %q", s.Counters.PendingSectors, s.Messages)
	}
	if s.PowerOnHours == nil || *s.PowerOnHours != 100 {
		t.Errorf("Power_On_Minutes 6000 = %v hours, want 100", s.PowerOnHours)
	}
}

func jsonMarshal(v any) (string, error) {
	b, err := json.Marshal(v)
	return string(b), err
}

// The SCSI identity keys were renamed between smartctl releases; each
// generation alone gives the same identity.
func TestJSONSCSIIdentityKeys(t *testing.T) {
	head := `{"json_format_version":[1,0],"smartctl":{"exit_status":0},"device":{"protocol":"SCSI"},`
	for name, doc := range map[string]string{
		"7.0-7.2":        head + `"vendor":"SEAGATE","product":"ST600MP0036","revision":"KT3A"}`,
		"7.3-7.4":        head + `"scsi_vendor":"SEAGATE","scsi_product":"ST600MP0036","scsi_revision":"KT3A"}`,
		"7.3 with model": head + `"scsi_vendor":"SEAGATE","scsi_product":"ST600MP0036","scsi_model_name":"SEAGATE ST600MP0036","scsi_revision":"KT3A"}`,
		"7.5":            head + `"scsi_vendor":"SEAGATE","scsi_product":"ST600MP0036","model_name":"SEAGATE ST600MP0036","scsi_model_name":"SEAGATE ST600MP0036","scsi_revision":"KT3A"}`,
	} {
		s, err := Parse([]byte(doc))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if s.Model != "SEAGATE ST600MP0036" || s.Firmware != "KT3A" || s.Protocol != hal.ProtocolSCSI {
			t.Errorf("%s: model %q firmware %q protocol %q", name, s.Model, s.Firmware, s.Protocol)
		}
	}
}

func TestTextCommandLineAndPrompt(t *testing.T) {
	for _, first := range []string{
		"smartctl -a /dev/sdb", "# smartctl -x /dev/sda", "$ /cygdrive/c/smart/smartctl -A /dev/sda",
		"[root@host ~]# sudo smartctl -A /dev/sda",
	} {
		p := &textParser{attrSeen: map[int]bool{}}
		if !p.banner(first) {
			t.Errorf("%q not taken for a command line", first)
		}
	}
	p := &textParser{attrSeen: map[int]bool{}}
	if p.banner("SMART Disabled. Use option: smartctl -s on to enable it.") {
		t.Error("a message mentioning smartctl taken for a command line")
	}
}

// Text with many lines opening with "{" is read in linear time: 2 MiB of
// them once took tens of seconds. Benchmarked, not timed: the test only
// checks the answer, and BenchmarkJSONStartHostile shows the cost.
func TestJSONStartManyBraceLines(t *testing.T) {
	data := []byte(strings.Repeat("x\n{not json\n", 1000) + "\n{\"json_format_version\": [1, 0]}\n")
	start, ok := jsonStart(data)
	if !ok || data[start] != '{' || start != 2 {
		t.Fatalf("start %d ok %v", start, ok)
	}
	if _, ok := jsonStart([]byte("x" + strings.Repeat("\n{", 1000))); ok {
		t.Fatal("found JSON where there is none")
	}
}

func BenchmarkJSONStartHostile(b *testing.B) {
	data := []byte("x" + strings.Repeat("\n{", 1<<20))
	b.SetBytes(int64(len(data)))
	for i := 0; i < b.N; i++ {
		jsonStart(data)
	}
}
