package wire

import (
	"bytes"
	"testing"
)

func TestBatchRoundTrip(t *testing.T) {
	in := [][]byte{{0xa0}, []byte("second"), {}}
	b, err := EncodeBatch(in)
	if err != nil {
		t.Fatal(err)
	}
	out, err := DecodeBatch(b)
	if err != nil || len(out) != 3 || !bytes.Equal(out[1], in[1]) {
		t.Fatalf("round trip: %q, %v", out, err)
	}
	if _, err := DecodeBatch(append(b, 0)); err == nil {
		t.Fatal("trailing byte accepted")
	}
	if _, err := EncodeBatch(nil); err == nil {
		t.Fatal("empty batch encoded")
	}
}

func TestContentDigest(t *testing.T) {
	body := []byte("hello")
	d := ContentDigest(body)
	if d != "sha-256=:LPJNul+wow4m6DsqxbninhsWHlwfp0JecwQzYpOLmCQ=:" {
		t.Fatalf("digest %s", d)
	}
	if err := CheckContentDigest(d, body); err != nil {
		t.Fatal(err)
	}
	if err := CheckContentDigest("sha-512=:AAAA:, "+d, body); err != nil {
		t.Fatalf("with another algorithm first: %v", err)
	}
	for _, bad := range []string{"", "sha-256=abc", "sha-512=:AAAA:", "sha-256=:!!:", ContentDigest([]byte("other"))} {
		if err := CheckContentDigest(bad, body); err == nil {
			t.Errorf("accepted %q", bad)
		}
	}
}

func FuzzDecodeBatch(f *testing.F) {
	b, _ := EncodeBatch([][]byte{{1, 2, 3}, []byte("x")})
	f.Add(b)
	f.Add([]byte{0x80})
	f.Fuzz(func(t *testing.T, data []byte) {
		ev, err := DecodeBatch(data)
		if err != nil {
			return
		}
		again, err := EncodeBatch(ev)
		if err != nil {
			t.Fatal(err)
		}
		ev2, err := DecodeBatch(again)
		if err != nil || len(ev2) != len(ev) {
			t.Fatal("re-encoded batch differs")
		}
	})
}

func FuzzContentDigest(f *testing.F) {
	f.Add("sha-256=:LPJNul+wow4m6DsqxbninhsWHlwfp0JecwQzYpOLmCQ=:", []byte("hello"))
	f.Fuzz(func(t *testing.T, field string, body []byte) {
		_ = CheckContentDigest(field, body)
		if err := CheckContentDigest(ContentDigest(body), body); err != nil {
			t.Fatal(err)
		}
	})
}
