package heartbeat

import (
	"net/netip"
	"testing"
	"time"

	hb "github.com/dcagent/dcagent/agent/heartbeat"
	"github.com/dcagent/dcagent/agent/work"
)

// FuzzHeartbeatDecode feeds arbitrary bytes to the service's side of the
// wire: as a heartbeat payload (decode, apply to a device, encode the
// reply) and as a datagram (record parsing and authentication with a
// session's keys). Nothing may panic, and every heartbeat that decodes
// must get a reply that encodes and echoes it.
func FuzzHeartbeatDecode(f *testing.F) {
	svc, err := New(Options{})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { svc.Close() })
	svc.Enqueue("SYS-FUZZ", work.Item{ID: "w1", Kind: work.KindCollectNow})
	st := &exportedState{CipherSuiteID: 0xc02b, MasterSecret: make([]byte, 48), LocalConnectionID: []byte{1, 2, 3, 4}}
	rc, err := newRecordCrypto(st)
	if err != nil {
		f.Fatal(err)
	}
	steady, _ := hb.EncodeHeartbeat(&hb.Heartbeat{Seq: 1733300000, Nonce: []byte{1, 2, 3, 4}})
	full, _ := hb.EncodeHeartbeat(&hb.Heartbeat{Seq: 9, Nonce: []byte{4, 3, 2, 1}, Wait: 60,
		Telemetry: &hb.Telemetry{DrivesOK: 4, DrivesWarn: 1, CertNotAfter: 1893456000, AgentVersion: "1.0"},
		Acks:      []string{"w1"}, Results: []work.Result{{ID: "w1", OK: true}}})
	f.Add(steady)
	f.Add(full)
	// A record as the device sends it (tls12_cid, epoch 1) with each.
	peer := &recordCrypto{read: rc.write, write: rc.read, readIV: rc.writeIV, writeIV: rc.readIV, writeCID: []byte{1, 2, 3, 4}}
	f.Add(peer.seal(nil, ctApplicationData, 5, steady))
	f.Add(peer.seal(nil, ctApplicationData, 6, full))
	f.Add([]byte{ctHandshake, 0xfe, 0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 4, 1, 0, 0, 0})

	d := svc.device("SYS-FUZZ")
	from := netip.MustParseAddrPort("192.0.2.9:4000")
	f.Fuzz(func(t *testing.T, b []byte) {
		if h, err := hb.DecodeHeartbeat(b); err == nil {
			r := svc.process(d, h, ChannelDTLS, from, 1, time.Now(), maxDTLSWork)
			if _, err := hb.EncodeReply(r); err != nil {
				t.Fatalf("reply to a valid heartbeat does not encode: %v", err)
			}
			if string(r.Echo) != string(hb.EchoFor("SYS-FUZZ", h.Seq, h.Nonce)) {
				t.Fatal("reply does not echo the heartbeat")
			}
		}
		buf := append([]byte(nil), b...)
		var w replayWindow
		for rest := buf; len(rest) > 0; {
			r, next, err := parseRecord(rest, cidLen)
			if err != nil {
				break
			}
			rest = next
			if r.outerType == ctConnectionID && w.fresh(r.seq) {
				if _, _, err := rc.open(r); err == nil {
					w.accept(r.seq)
				}
			}
		}
		isClientHello(b)
	})
}
