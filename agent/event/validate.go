package event

import (
	"errors"
	"fmt"
	"math"
	"reflect"
	"strconv"
	"time"
	"unicode/utf8"
)

// MaxSystemIDLen bounds the system ID.
const MaxSystemIDLen = 128

// Validate checks the envelope and that every payload field is declared in
// the reportable-items registry for the event's type, with a value of the
// declared kind. The error names the field at fault.
func (e *Event) Validate() error {
	if e == nil {
		return fmt.Errorf("%w: nil event", ErrInvalid)
	}
	if _, err := ParseID(e.ID); err != nil {
		return fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	spec, ok := registryByType[e.Type]
	if !ok {
		return fmt.Errorf("%w: event %s: type %q is not in the reportable-items registry", ErrUndeclaredField, e.ID, e.Type)
	}
	if e.Severity < SeverityInfo || e.Severity > SeverityCritical {
		return fmt.Errorf("%w: event %s: severity %d out of range 1..5", ErrInvalid, e.ID, e.Severity)
	}
	if e.Created.IsZero() {
		return fmt.Errorf("%w: event %s: no creation time", ErrInvalid, e.ID)
	}
	if err := checkSystemID(e.SystemID); err != nil {
		return fmt.Errorf("%w: event %s: %v", ErrInvalid, e.ID, err)
	}
	for k, v := range e.Payload {
		f, ok := findField(spec.Fields, k)
		if !ok {
			return &FieldError{Type: e.Type, Field: k, Err: ErrUndeclaredField}
		}
		if err := checkValue(f, reflect.ValueOf(v), k, 0); err != nil {
			return &FieldError{Type: e.Type, Field: err.path, Err: err.err}
		}
	}
	return nil
}

func checkSystemID(s string) error {
	if s == "" {
		return errors.New("no system ID")
	}
	if len(s) > MaxSystemIDLen {
		return fmt.Errorf("system ID longer than %d bytes", MaxSystemIDLen)
	}
	for _, r := range s {
		if r < 0x21 || r == 0x7f || r == utf8.RuneError {
			return fmt.Errorf("system ID %q holds a space or control character", s)
		}
	}
	return nil
}

func findField(fields []Field, name string) (Field, bool) {
	for _, f := range fields {
		if f.Name == name {
			return f, true
		}
	}
	return Field{}, false
}

type valueError struct {
	path string
	err  error
}

const maxDepth = 8

func checkValue(f Field, v reflect.Value, path string, depth int) *valueError {
	if depth > maxDepth {
		return &valueError{path, errors.New("nested too deep")}
	}
	for v.IsValid() && (v.Kind() == reflect.Pointer || v.Kind() == reflect.Interface) {
		if v.IsNil() {
			return &valueError{path, errors.New("no value (nil): leave the field out instead")}
		}
		v = v.Elem()
	}
	if !v.IsValid() {
		return &valueError{path, errors.New("no value (nil): leave the field out instead")}
	}
	bad := func(format string, args ...any) *valueError {
		return &valueError{path, fmt.Errorf("%w: "+format, append([]any{ErrInvalid}, args...)...)}
	}
	maxText := f.MaxLen
	if maxText == 0 {
		maxText = defaultMaxText
	}
	switch f.Kind {
	case KindString:
		if v.Kind() != reflect.String {
			return bad("want text, got %s", v.Type())
		}
		s := v.String()
		if len(s) > maxText {
			return bad("text of %d bytes is longer than %d", len(s), maxText)
		}
		if !utf8.ValidString(s) {
			return bad("text is not UTF-8")
		}
	case KindInt:
		switch v.Kind() {
		case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
			reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		default:
			return bad("want an integer, got %s", v.Type())
		}
	case KindFloat:
		switch v.Kind() {
		case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
			reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		case reflect.Float32, reflect.Float64:
			if x := v.Float(); math.IsNaN(x) || math.IsInf(x, 0) {
				return bad("number is %v", x)
			}
		default:
			return bad("want a number, got %s", v.Type())
		}
	case KindBool:
		if v.Kind() != reflect.Bool {
			return bad("want true or false, got %s", v.Type())
		}
	case KindTime:
		if t, ok := v.Interface().(time.Time); ok {
			if t.IsZero() {
				return bad("zero time")
			}
			break
		}
		if v.Kind() != reflect.String {
			return bad("want a time, got %s", v.Type())
		}
		if _, err := time.Parse(time.RFC3339Nano, v.String()); err != nil {
			return bad("time %q is not RFC 3339", truncate(v.String(), 40))
		}
	case KindBytes:
		if v.Kind() != reflect.Slice || v.Type().Elem().Kind() != reflect.Uint8 {
			return bad("want bytes, got %s", v.Type())
		}
		if v.Len() > maxText {
			return bad("%d bytes, more than %d", v.Len(), maxText)
		}
	case KindObject:
		if v.Kind() != reflect.Map || v.Type().Key().Kind() != reflect.String {
			return bad("want an object with named fields, got %s", v.Type())
		}
		iter := v.MapRange()
		for iter.Next() {
			name := iter.Key().String()
			sub, ok := findField(f.Fields, name)
			if !ok {
				return &valueError{path + "." + name, ErrUndeclaredField}
			}
			if err := checkValue(sub, iter.Value(), path+"."+name, depth+1); err != nil {
				return err
			}
		}
	case KindList:
		if v.Kind() != reflect.Slice && v.Kind() != reflect.Array {
			return bad("want a list, got %s", v.Type())
		}
		maxList := f.MaxLen
		if maxList == 0 {
			maxList = defaultMaxList
		}
		if v.Len() > maxList {
			return bad("list of %d elements, more than %d", v.Len(), maxList)
		}
		elem := Field{Name: f.Name, Kind: f.Elem, Fields: f.Fields}
		for i := 0; i < v.Len(); i++ {
			if err := checkValue(elem, v.Index(i), path+"["+strconv.Itoa(i)+"]", depth+1); err != nil {
				return err
			}
		}
	default:
		return bad("registry declares unknown kind %q", f.Kind)
	}
	return nil
}
