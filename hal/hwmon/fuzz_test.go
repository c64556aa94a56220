package hwmon

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// fuzzTree turns fuzz bytes into an hwmon tree: records separated by NUL,
// each "chipdir/file" SOH "content". Paths are relative to the class dir.
func fuzzTree(data []byte) *memFS {
	m := newMemFS()
	for _, rec := range bytes.Split(data, []byte{0}) {
		name, content, ok := bytes.Cut(rec, []byte{1})
		if !ok || len(name) == 0 {
			continue
		}
		p := "/r/sys/class/hwmon/" + strings.Trim(string(name), "/")
		m.files[filepath.Clean(p)] = append([]byte(nil), content...)
	}
	return m
}

// FuzzHwmon feeds fuzz bytes to the value/label parser and, read as a
// tree, to the whole reader. Neither may panic, and every sensor must come
// out either with a value in its class's range or unreadable with a reason.
func FuzzHwmon(f *testing.F) {
	// Seeds: every attribute of the real captures, one record each, and
	// each capture chip as one tree.
	root := capture(f, "node_exporter", "sys", "class", "hwmon")
	chips, _ := os.ReadDir(root)
	for _, c := range chips {
		var tree bytes.Buffer
		filepath.Walk(filepath.Join(root, c.Name()), func(p string, info os.FileInfo, err error) error {
			if err != nil || info.IsDir() {
				return nil
			}
			b, _ := os.ReadFile(p)
			rel, _ := filepath.Rel(root, p)
			tree.WriteString(rel)
			tree.WriteByte(1)
			tree.Write(b)
			tree.WriteByte(0)
			f.Add([]byte(filepath.Base(p) + "\x01" + string(b)))
			return nil
		})
		f.Add(tree.Bytes())
	}
	f.Add([]byte("hwmon0/temp1_input\x01-128000\x00hwmon0/temp1_fault\x011"))
	f.Add([]byte("hwmon0/device/name\x01x\x00hwmon0/device/fan1_input\x0112"))

	f.Fuzz(func(t *testing.T, data []byte) {
		if name, text, ok := bytes.Cut(data, []byte{1}); ok {
			if v, err := ParseValue(string(name), text); err == nil {
				a, _ := parseAttrName(string(name))
				if v < a.kind.min || v > a.kind.max {
					t.Fatalf("ParseValue(%q) = %v outside range without an error", name, v)
				}
			}
			_ = parseLabel(text)
		}
		rd, err := (&Reader{Root: "/r", FS: fuzzTree(data)}).Read(context.Background())
		if err != nil {
			return
		}
		for _, s := range rd.Sensors() {
			ki := infoFor(s.Kind)
			if ki == nil {
				t.Fatalf("unknown kind %q", s.Kind)
			}
			switch {
			case s.Kind == KindIntrusion:
				if s.Value != nil {
					t.Fatalf("intrusion with a value: %+v", s)
				}
			case s.Value == nil && s.Unreadable == "":
				t.Fatalf("%s: neither value nor reason", s.Describe())
			case s.Value != nil && s.Unreadable != "":
				t.Fatalf("%s: both value and reason", s.Describe())
			case s.Value != nil && (*s.Value < ki.min || *s.Value > ki.max):
				t.Fatalf("%s: value %v out of range", s.Describe(), *s.Value)
			}
		}
	})
}
