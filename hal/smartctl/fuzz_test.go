package smartctl

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dcagent/dcagent/hal"
)

// seedCaptures adds every shared capture under dirs (json, json-edge, text)
// to the fuzz corpus.
func seedCaptures(f *testing.F, dirs ...string) {
	f.Helper()
	root, files := walkCaptures(f)
	n := 0
	for _, rel := range files {
		for _, d := range dirs {
			if strings.HasPrefix(rel, d+"/") {
				b, err := os.ReadFile(filepath.Join(root, filepath.FromSlash(rel)))
				if err != nil {
					f.Fatal(err)
				}
				f.Add(b)
				n++
			}
		}
	}
	if n == 0 {
		f.Fatalf("no captures under %v to seed the corpus", dirs)
	}
}

// checkFuzzResult holds for any input: an error or a snapshot, never both,
// never neither, and the snapshot marshals.
func checkFuzzResult(t *testing.T, s *hal.DriveSnapshot, err error) {
	if (s == nil) == (err == nil) {
		t.Fatalf("snapshot %v and error %v", s, err)
	}
	if s != nil {
		if _, err := json.Marshal(s); err != nil {
			t.Fatalf("snapshot does not marshal: %v", err)
		}
	}
}

func FuzzParseJSON(f *testing.F) {
	seedCaptures(f, "json", "json-edge")
	f.Add([]byte(`{"json_format_version":[1,0],"smartctl":{"exit_status":2}}`))
	f.Add([]byte("warning\n{\"json_format_version\":[1,0],\"model_name\":\"X\"}\ntrailer"))
	f.Fuzz(func(t *testing.T, data []byte) {
		start, ok := jsonStart(data)
		if !ok {
			start = 0
		}
		s, err := parseJSON(data, start)
		checkFuzzResult(t, s, err)
		s2, err2 := Parse(data)
		checkFuzzResult(t, s2, err2)
	})
}

func FuzzParseText(f *testing.F) {
	seedCaptures(f, "text")
	f.Add([]byte("/dev/sda -d scsi # /dev/sda, SCSI device\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := parseText(data)
		checkFuzzResult(t, s, err)
		s2, err2 := Parse(data)
		checkFuzzResult(t, s2, err2)
	})
}
