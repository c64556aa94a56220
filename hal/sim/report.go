package sim

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"strconv"
)

// report is one smartctl JSON report, held generically so that any
// capture can be replayed and edited field by field without a parser of
// our own (hal/smartctl is the parser). Numbers stay json.Number so that
// 48-bit raw values and 128-bit NVMe counters survive untouched.
type report map[string]any

func decodeReport(b []byte) (report, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var r report
	if err := dec.Decode(&r); err != nil {
		return nil, err
	}
	if r == nil {
		return nil, fmt.Errorf("not a JSON object")
	}
	return r, nil
}

func loadReport(path string) (report, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	r, err := decodeReport(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return r, nil
}

// obj returns the object at key, creating it when create is set.
func (r report) obj(key string, create bool) report {
	switch v := r[key].(type) {
	case map[string]any:
		return report(v)
	case report:
		return v
	}
	if !create {
		return nil
	}
	m := map[string]any{}
	r[key] = m
	return report(m)
}

// path walks nested objects; nil when any is missing.
func (r report) path(keys ...string) report {
	cur := r
	for _, k := range keys {
		if cur == nil {
			return nil
		}
		cur = cur.obj(k, false)
	}
	return cur
}

func (r report) str(key string) string {
	if r == nil {
		return ""
	}
	s, _ := r[key].(string)
	return s
}

// num reads a non-negative integer; ok is false when absent or not one.
func (r report) num(key string) (uint64, bool) {
	if r == nil {
		return 0, false
	}
	return toUint(r[key])
}

func toUint(v any) (uint64, bool) {
	switch n := v.(type) {
	case json.Number:
		u, err := strconv.ParseUint(n.String(), 10, 64)
		return u, err == nil
	case float64:
		if n >= 0 {
			return uint64(n), true
		}
	case int:
		if n >= 0 {
			return uint64(n), true
		}
	case uint64:
		return n, true
	}
	return 0, false
}

func toInt(v any) (int64, bool) {
	switch n := v.(type) {
	case json.Number:
		i, err := strconv.ParseInt(n.String(), 10, 64)
		return i, err == nil
	case float64:
		return int64(n), true
	case int:
		return int64(n), true
	case uint64:
		return int64(n), true
	}
	return 0, false
}

func (r report) setNum(key string, v uint64) { r[key] = json.Number(strconv.FormatUint(v, 10)) }

func (r report) setInt(key string, v int64) { r[key] = json.Number(strconv.FormatInt(v, 10)) }

// add adds delta to a counter, creating it at delta when absent.
func (r report) add(key string, delta uint64) uint64 {
	v, _ := r.num(key)
	v += delta
	r.setNum(key, v)
	return v
}

func (r report) boolean(key string) (bool, bool) {
	if r == nil {
		return false, false
	}
	b, ok := r[key].(bool)
	return b, ok
}

// ataTable returns the ATA attribute rows.
func (r report) ataTable() []any {
	t := r.path("ata_smart_attributes")
	if t == nil {
		return nil
	}
	rows, _ := t["table"].([]any)
	return rows
}

// ataAttr finds an attribute row by id.
func (r report) ataAttr(id uint64) report {
	for _, row := range r.ataTable() {
		m, ok := row.(map[string]any)
		if !ok {
			continue
		}
		if v, ok := toUint(m["id"]); ok && v == id {
			return report(m)
		}
	}
	return nil
}

// ataRaw reads an attribute's raw count.
func (r report) ataRaw(id uint64) (uint64, bool) {
	a := r.ataAttr(id)
	if a == nil {
		return 0, false
	}
	return a.obj("raw", false).num("value")
}

// attrSpec describes an ATA attribute the simulator may have to add.
type attrSpec struct {
	id            uint64
	name          string
	value, thresh int64
	prefail       bool
}

var ataSpecs = map[uint64]attrSpec{
	1:   {1, "Raw_Read_Error_Rate", 100, 16, true},
	3:   {3, "Spin_Up_Time", 95, 24, true},
	4:   {4, "Start_Stop_Count", 100, 0, false},
	5:   {5, "Reallocated_Sector_Ct", 100, 10, true},
	7:   {7, "Seek_Error_Rate", 100, 67, true},
	9:   {9, "Power_On_Hours", 97, 0, false},
	10:  {10, "Spin_Retry_Count", 100, 60, true},
	12:  {12, "Power_Cycle_Count", 100, 0, false},
	187: {187, "Reported_Uncorrect", 100, 0, false},
	188: {188, "Command_Timeout", 100, 0, false},
	194: {194, "Temperature_Celsius", 176, 0, false},
	197: {197, "Current_Pending_Sector", 100, 0, false},
	198: {198, "Offline_Uncorrectable", 100, 0, false},
	199: {199, "UDMA_CRC_Error_Count", 200, 0, false},
}

// newAttrRow builds an attribute row as smartctl 7.x prints it.
func newAttrRow(s attrSpec, raw uint64) map[string]any {
	flags := map[string]any{
		"value": json.Number("50"), "string": "-O--CK ",
		"prefailure": false, "updated_online": true, "performance": false,
		"error_rate": false, "event_count": true, "auto_keep": true,
	}
	if s.prefail {
		flags["value"], flags["string"], flags["prefailure"] = json.Number("51"), "PO--CK ", true
	}
	return map[string]any{
		"id":          json.Number(strconv.FormatUint(s.id, 10)),
		"name":        s.name,
		"value":       json.Number(strconv.FormatInt(s.value, 10)),
		"worst":       json.Number(strconv.FormatInt(s.value, 10)),
		"thresh":      json.Number(strconv.FormatInt(s.thresh, 10)),
		"when_failed": "",
		"flags":       flags,
		"raw":         map[string]any{"value": json.Number(strconv.FormatUint(raw, 10)), "string": strconv.FormatUint(raw, 10)},
	}
}

// ensureAttr returns the row for id, adding it (raw 0) when the report has
// an attribute table without it.
func (r report) ensureAttr(id uint64) report {
	if a := r.ataAttr(id); a != nil {
		return a
	}
	t := r.obj("ata_smart_attributes", true)
	rows, _ := t["table"].([]any)
	row := newAttrRow(ataSpecs[id], 0)
	// Keep the table in id order, as smartctl prints it.
	at := len(rows)
	for i, x := range rows {
		if m, ok := x.(map[string]any); ok {
			if v, ok := toUint(m["id"]); ok && v > id {
				at = i
				break
			}
		}
	}
	rows = append(rows, nil)
	copy(rows[at+1:], rows[at:])
	rows[at] = row
	t["table"] = rows
	return report(row)
}

// setRaw sets an attribute's raw count, keeping smartctl's rendering in
// step. A vendor rendering with detail ("5670 (1 343)") is replaced by the
// plain count.
func (a report) setRaw(v uint64) {
	raw := a.obj("raw", true)
	raw.setNum("value", v)
	raw["string"] = strconv.FormatUint(v, 10)
}

// deepCopy copies a decoded report.
func deepCopy(v any) any {
	switch x := v.(type) {
	case map[string]any:
		m := make(map[string]any, len(x))
		for k, e := range x {
			m[k] = deepCopy(e)
		}
		return m
	case report:
		return report(deepCopy(map[string]any(x)).(map[string]any))
	case []any:
		s := make([]any, len(x))
		for i, e := range x {
			s[i] = deepCopy(e)
		}
		return s
	}
	return v
}
