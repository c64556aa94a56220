package cases

import (
	"encoding/json"
	"math"
)

// payload reads an event payload whichever way it was decoded: Go values
// as the agent built them (in-process tests), or the generic values the
// CBOR decoder gives (map[string]any, []any, uint64, int64, float64).
type payload map[string]any

func (p payload) str(k string) (string, bool) {
	s, ok := p[k].(string)
	return s, ok
}

func (p payload) uint(k string) (uint64, bool) {
	switch v := p[k].(type) {
	case uint64:
		return v, true
	case int64:
		return uint64(max(v, 0)), v >= 0
	case int:
		return uint64(max(v, 0)), v >= 0
	case uint32:
		return uint64(v), true
	case float64:
		if v >= 0 && v <= math.MaxUint64 && v == math.Trunc(v) {
			return uint64(v), true
		}
	case json.Number:
		if n, err := v.Int64(); err == nil && n >= 0 {
			return uint64(n), true
		}
	}
	return 0, false
}

func (p payload) obj(k string) (payload, bool) {
	switch v := p[k].(type) {
	case map[string]any:
		return payload(v), true
	case payload:
		return v, true
	}
	return nil, false
}

func (p payload) objs(k string) []payload {
	var out []payload
	switch v := p[k].(type) {
	case []map[string]any:
		for _, m := range v {
			out = append(out, payload(m))
		}
	case []any:
		for _, e := range v {
			if m, ok := e.(map[string]any); ok {
				out = append(out, payload(m))
			}
		}
	}
	return out
}

func (p payload) strs(k string) []string {
	switch v := p[k].(type) {
	case []string:
		return append([]string(nil), v...)
	case []any:
		var out []string
		for _, e := range v {
			if s, ok := e.(string); ok {
				out = append(out, s)
			}
		}
		return out
	}
	return nil
}
