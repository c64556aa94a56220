package heartbeat

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/fxamacker/cbor/v2"

	"github.com/dcagent/dcagent/agent/work"
)

func TestSteadyStateSizes(t *testing.T) {
	h := &Heartbeat{Seq: 1_733_300_000 + 1440*45, Nonce: []byte{1, 2, 3, 4}}
	b, err := EncodeHeartbeat(h)
	if err != nil {
		t.Fatal(err)
	}
	if len(b) != 13 {
		t.Fatalf("steady-state heartbeat is %d bytes (%x), want 13", len(b), b)
	}
	r := &Reply{Echo: EchoFor("SYS-1", h.Seq, h.Nonce)}
	rb, err := EncodeReply(r)
	if err != nil {
		t.Fatal(err)
	}
	if len(rb) != 7 {
		t.Fatalf("steady-state reply is %d bytes (%x), want 7", len(rb), rb)
	}
}

func TestRoundTrip(t *testing.T) {
	h := &Heartbeat{
		Seq: 42, Nonce: []byte{9, 8, 7, 6}, Wait: 60,
		Telemetry: &Telemetry{DrivesOK: 10, DrivesWatch: 1, DrivesWarn: 2, DrivesFail: 3, SensorAlarms: 1, SpoolBacklog: 17, CertNotAfter: 1893456000, AgentVersion: "1.2.3"},
		Acks:      []string{"a", "b"},
		Results:   []work.Result{{ID: "a", OK: true}, {ID: "b", Detail: "no such file"}},
	}
	b, err := EncodeHeartbeat(h)
	if err != nil {
		t.Fatal(err)
	}
	got, err := DecodeHeartbeat(b)
	if err != nil {
		t.Fatal(err)
	}
	b2, _ := EncodeHeartbeat(got)
	if !bytes.Equal(b, b2) {
		t.Fatalf("round trip changed the encoding:\n%x\n%x", b, b2)
	}
	r := &Reply{Echo: []byte{1, 2, 3, 4}, Work: []work.Item{{ID: "w", Kind: work.KindScript, Body: []byte{0xa0}}}, Done: []string{"a"}, More: true}
	rb, err := EncodeReply(r)
	if err != nil {
		t.Fatal(err)
	}
	gr, err := DecodeReply(rb)
	if err != nil {
		t.Fatal(err)
	}
	if !gr.More || len(gr.Work) != 1 || gr.Work[0].Kind != work.KindScript || gr.Done[0] != "a" {
		t.Fatalf("reply round trip: %+v", gr)
	}
}

func TestEchoBindsDeviceSeqAndNonce(t *testing.T) {
	base := EchoFor("SYS-1", 100, []byte{1, 2, 3, 4})
	for name, other := range map[string][]byte{
		"device": EchoFor("SYS-2", 100, []byte{1, 2, 3, 4}),
		"seq":    EchoFor("SYS-1", 101, []byte{1, 2, 3, 4}),
		"nonce":  EchoFor("SYS-1", 100, []byte{1, 2, 3, 5}),
		// The system ID and the sequence number are not run together.
		"boundary": EchoFor("SYS-1\x00", 100, []byte{1, 2, 3, 4}),
	} {
		if bytes.Equal(base, other) {
			t.Errorf("echo does not depend on the %s", name)
		}
	}
	if len(base) != EchoSize {
		t.Fatalf("echo of %d bytes", len(base))
	}
}

func TestDecodeRefuses(t *testing.T) {
	enc := func(v any) []byte {
		b, err := cbor.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	long := strings.Repeat("x", MaxIDLen+1)
	cases := map[string]struct {
		b    []byte
		want error
		text string
	}{
		"empty":           {nil, ErrMalformed, "heartbeat"},
		"not cbor":        {[]byte{0xff, 0x00}, ErrMalformed, ""},
		"array":           {enc([]int{1, 2}), ErrMalformed, ""},
		"no seq":          {enc(map[int]any{2: []byte{1, 2, 3, 4}}), ErrMalformed, "sequence number 0"},
		"short nonce":     {enc(map[int]any{1: 5, 2: []byte{1}}), ErrMalformed, "nonce of 1 bytes"},
		"future version":  {enc(map[int]any{0: 2, 1: 5, 2: []byte{1, 2, 3, 4}}), ErrVersion, "wire version 2"},
		"long ack":        {enc(map[int]any{1: 5, 2: []byte{1, 2, 3, 4}, 4: []string{long}}), ErrMalformed, "ack id"},
		"empty ack":       {enc(map[int]any{1: 5, 2: []byte{1, 2, 3, 4}, 4: []string{""}}), ErrMalformed, "ack id"},
		"duplicate key":   {[]byte{0xa3, 0x01, 0x05, 0x01, 0x06, 0x02, 0x44, 1, 2, 3, 4}, ErrMalformed, "duplicate"},
		"trailing bytes":  {append(enc(map[int]any{1: 5, 2: []byte{1, 2, 3, 4}}), 0x00), ErrMalformed, "extraneous"},
		"wrong seq type":  {enc(map[int]any{1: "five", 2: []byte{1, 2, 3, 4}}), ErrMalformed, ""},
		"too many acks":   {enc(map[int]any{1: 5, 2: []byte{1, 2, 3, 4}, 4: make([]string, MaxAcks+1)}), ErrMalformed, ""},
		"indefinite map":  {[]byte{0xbf, 0x01, 0x05, 0xff}, ErrMalformed, "indefinite"},
		"invalid utf8 id": {enc(map[int]any{1: 5, 2: []byte{1, 2, 3, 4}, 4: []any{cbor.RawMessage{0x62, 0xff, 0xfe}}}), ErrMalformed, ""},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := DecodeHeartbeat(c.b)
			if !errors.Is(err, c.want) {
				t.Fatalf("err %v, want %v", err, c.want)
			}
			if !strings.Contains(err.Error(), c.text) {
				t.Fatalf("err %q does not say %q", err, c.text)
			}
		})
	}
	if _, err := DecodeReply(enc(map[int]any{1: []byte{1, 2}})); !errors.Is(err, ErrMalformed) {
		t.Fatalf("short echo: %v", err)
	}
	if _, err := DecodeReply(enc(map[int]any{1: []byte{1, 2, 3, 4}, 2: []map[int]any{{1: "id"}}})); !errors.Is(err, ErrMalformed) {
		t.Fatalf("work item without a kind: %v", err)
	}
	if _, err := EncodeHeartbeat(&Heartbeat{Seq: 1, Nonce: []byte{1}}); !errors.Is(err, ErrMalformed) {
		t.Fatalf("encode checks too: %v", err)
	}
}

// An older receiver ignores keys a compatible newer sender adds.
func TestUnknownKeysAreIgnored(t *testing.T) {
	b, _ := cbor.Marshal(map[int]any{1: 5, 2: []byte{1, 2, 3, 4}, 99: "new field"})
	h, err := DecodeHeartbeat(b)
	if err != nil || h.Seq != 5 {
		t.Fatalf("%+v, %v", h, err)
	}
}

// fuzzSeeds are real encodings: a steady-state heartbeat, a full one, a
// steady-state reply and one with work.
func fuzzSeeds(t testing.TB) [][]byte {
	h1, _ := EncodeHeartbeat(&Heartbeat{Seq: 1733300000, Nonce: []byte{1, 2, 3, 4}})
	h2, _ := EncodeHeartbeat(&Heartbeat{Seq: 7, Nonce: []byte{1, 2, 3, 4}, Wait: 60,
		Telemetry: &Telemetry{DrivesOK: 3, DrivesFail: 1, AgentVersion: "1.0"},
		Acks:      []string{"x"}, Results: []work.Result{{ID: "x", OK: true, Detail: "d"}}})
	r1, _ := EncodeReply(&Reply{Echo: []byte{1, 2, 3, 4}})
	r2, _ := EncodeReply(&Reply{Echo: []byte{1, 2, 3, 4}, Work: []work.Item{{ID: "w1", Kind: work.KindRemoteAccess, Body: []byte{0xa1, 0x01, 0x61, 0x73}}}, Done: []string{"x"}, More: true})
	return [][]byte{h1, h2, r1, r2}
}

// FuzzHeartbeatDecode feeds arbitrary bytes to the agent's decoders (the
// agent decodes replies; the heartbeat decoder is shared with the
// backend). Whatever decodes must pass its own checks when encoded again
// and decode to the same encoding.
func FuzzHeartbeatDecode(f *testing.F) {
	for _, s := range fuzzSeeds(f) {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if r, err := DecodeReply(b); err == nil {
			enc, err := EncodeReply(r)
			if err != nil {
				t.Fatalf("decoded reply does not encode: %v", err)
			}
			r2, err := DecodeReply(enc)
			if err != nil {
				t.Fatalf("re-encoded reply does not decode: %v", err)
			}
			enc2, _ := EncodeReply(r2)
			if !bytes.Equal(enc, enc2) {
				t.Fatalf("reply encoding not stable")
			}
		}
		if h, err := DecodeHeartbeat(b); err == nil {
			enc, err := EncodeHeartbeat(h)
			if err != nil {
				t.Fatalf("decoded heartbeat does not encode: %v", err)
			}
			if _, err := DecodeHeartbeat(enc); err != nil {
				t.Fatalf("re-encoded heartbeat does not decode: %v", err)
			}
		}
	})
}
