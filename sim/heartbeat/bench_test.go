package heartbeat

import (
	"context"
	"crypto/tls"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cornelk/hashmap"

	hb "github.com/dcagent/dcagent/agent/heartbeat"
)

// countingConn counts the UDP payload the agent sends and receives,
// datagram by datagram, and tells handshake datagrams from heartbeat
// ones by their first record.
type countingConn struct {
	net.PacketConn
	mu              sync.Mutex
	hsOut, hsIn     int // handshake bytes, device to backend and back
	appOut, appIn   int // heartbeat bytes
	appOutD, appInD int // heartbeat datagrams
	hsDgram         int
	lastOut, lastIn int
}

// isApp: an application record: a connection-ID record past the
// Finished (epoch 1, sequence number above 0) from the device, a plain
// application-data record from the backend.
func isApp(b []byte) bool {
	if len(b) < 11 {
		return false
	}
	seq := uint64(binary.BigEndian.Uint16(b[5:7]))<<32 | uint64(binary.BigEndian.Uint32(b[7:11]))
	return b[0] == ctApplicationData || (b[0] == ctConnectionID && seq > 0)
}

func (c *countingConn) WriteTo(b []byte, addr net.Addr) (int, error) {
	c.mu.Lock()
	if isApp(b) {
		c.appOut += len(b)
		c.lastOut = len(b)
		c.appOutD++
	} else {
		c.hsOut += len(b)
		c.hsDgram++
	}
	c.mu.Unlock()
	return c.PacketConn.WriteTo(b, addr)
}

func (c *countingConn) ReadFrom(b []byte) (int, net.Addr, error) {
	n, addr, err := c.PacketConn.ReadFrom(b)
	if err == nil {
		c.mu.Lock()
		if isApp(b[:n]) {
			c.appIn += n
			c.lastIn = n
			c.appInD++
		} else {
			c.hsIn += n
			c.hsDgram++
		}
		c.mu.Unlock()
	}
	return n, addr, err
}

// BenchmarkAgentWireBytes runs the real agent against the service and
// counts the UDP payload both ways: the handshake (certificates from the
// test CA, P-256), a steady-state exchange, and an exchange carrying the
// telemetry summary. From them it reports a day at a 60 s interval: 1440
// exchanges, 24 of them with telemetry (it is sent hourly or on change),
// one handshake (session_max_age 24h). IPv4 and UDP headers (28 bytes a
// datagram) are not in these figures; the per-day IP-level total is
// reported separately.
func BenchmarkAgentWireBytes(b *testing.B) {
	bk := newBackend(b, Options{})
	var cc *countingConn
	listen := func() (net.PacketConn, error) {
		pc, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			return nil, err
		}
		cc = &countingConn{PacketConn: pc}
		return cc, nil
	}
	cfg := agentConfig(bk.addr.String(), "")
	cfg.Heartbeat.Interval = 10 * time.Millisecond
	cfg.Heartbeat.TelemetryEvery = time.Hour
	tele := hb.Telemetry{DrivesOK: 22, DrivesWatch: 1, SpoolBacklog: 3, AgentVersion: "1.0.0"}
	seen, unsub := bk.svc.Subscribe(4096)
	defer unsub()
	var telemetryExchange atomic.Int64
	for i := 0; i < b.N; i++ {
		a := startAgent(b, bk, fmt.Sprintf("SYS-BYTES-%d", i), cfg, hb.Options{ListenPacket: listen, Telemetry: func() hb.Telemetry { return tele }})
		e := nextSeen(b, seen, fmt.Sprintf("SYS-BYTES-%d", i), 20*time.Second, nil)
		if e.Telemetry == nil {
			b.Fatal("first heartbeat without telemetry")
		}
		waitFor(b, "first reply", func() bool { return !a.Status().LastHeartbeat.IsZero() })
		cc.mu.Lock()
		telemetryExchange.Store(int64(cc.lastOut + cc.lastIn))
		hsOut, hsIn := cc.hsOut, cc.hsIn
		hsDgrams := cc.hsDgram
		startOut, startIn, startOutD, startInD := cc.appOut, cc.appIn, cc.appOutD, cc.appInD
		cc.mu.Unlock()
		const exchanges = 100
		for k := 0; k < exchanges; k++ {
			if e := nextSeen(b, seen, fmt.Sprintf("SYS-BYTES-%d", i), 20*time.Second, nil); e.Telemetry != nil {
				b.Fatal("unchanged telemetry sent again")
			}
		}
		cc.mu.Lock() // before the agent stops: its close_notify is no heartbeat
		steadyOut := float64(cc.appOut-startOut) / float64(cc.appOutD-startOutD)
		steadyIn := float64(cc.appIn-startIn) / float64(cc.appInD-startInD)
		cc.mu.Unlock()
		a.stop(b)
		steady := steadyOut + steadyIn
		teleExtra := float64(telemetryExchange.Load()) - steady
		hs := float64(hsOut + hsIn)
		day := 1440*steady + 24*teleExtra + hs
		ipDay := day + float64(1440*2+hsDgrams)*28
		b.ReportMetric(steadyOut, "B-hb-out")
		b.ReportMetric(steadyIn, "B-hb-in")
		b.ReportMetric(teleExtra, "B-telemetry-extra")
		b.ReportMetric(hs, "B-handshake")
		b.ReportMetric(day/1000, "KB/day")
		b.ReportMetric(ipDay/1000, "KB/day-with-IPv4-UDP")
	}
}

// BenchmarkDTLSHandshake: full handshakes (cookie exchange, P-256
// certificates both ways, connection ID) against the service, client and
// service in this one process; one op is one handshake.
func BenchmarkDTLSHandshake(b *testing.B) {
	f := newFixture(b, Options{SessionIdle: time.Hour, MaxPendingHandshakes: 1024})
	const devices = 16
	certs := make([]tls.Certificate, devices)
	for i := range certs {
		certs[i] = f.ca.Device(b, fmt.Sprintf("SYS-HS-%02d", i))
	}
	var next atomic.Int64
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	b.SetParallelism(4)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			i := int(next.Add(1)) % devices
			id := fmt.Sprintf("SYS-HS-%02d", i)
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			c, err := DialLight(ctx, f.addr, f.clientConfig(b, certs[i]), id)
			cancel()
			if err != nil {
				b.Error(err)
				return
			}
			c.Close()
		}
	})
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "handshakes/s")
}

// BenchmarkSessionTable compares cornelk/hashmap with sync.Map as the
// table of live sessions: 10,000 sessions keyed by their numeric session
// id (the connection ID), looked up on every heartbeat, with a session
// made or dropped now and then.
func BenchmarkSessionTable(b *testing.B) {
	const n = 10000
	keys := make([]uint32, n)
	for i := range keys {
		keys[i] = rand.Uint32()
	}
	type table interface {
		get(uint32) (*session, bool)
		set(uint32, *session)
		del(uint32)
	}
	tables := []struct {
		name string
		make func() table
	}{
		{"hashmap", func() table { return hmTable{hashmap.New[uint32, *session]()} }},
		{"sync.Map", func() table { return &smTable{} }},
	}
	for _, mix := range []struct {
		name   string
		writes int // in 1000 operations
	}{{"get", 0}, {"get+1%-writes", 10}} {
		for _, tb := range tables {
			b.Run(mix.name+"/"+tb.name, func(b *testing.B) {
				t := tb.make()
				for _, k := range keys {
					t.set(k, &session{id: k})
				}
				b.ReportAllocs()
				b.ResetTimer()
				b.RunParallel(func(pb *testing.PB) {
					r := rand.New(rand.NewPCG(rand.Uint64(), 1))
					i := 0
					for pb.Next() {
						k := keys[r.IntN(n)]
						if mix.writes > 0 && i%1000 < mix.writes {
							if i%2 == 0 {
								t.del(k)
							} else {
								t.set(k, &session{id: k})
							}
						} else if s, ok := t.get(k); ok && s.id != k {
							b.Error("wrong session")
						}
						i++
					}
				})
			})
		}
	}
}

// BenchmarkSessionTable64 is BenchmarkSessionTable's lookups with
// uint64 keys, for comparison with REAL-PARTS.md's figures.
func BenchmarkSessionTable64(b *testing.B) {
	const n = 10000
	keys := make([]uint64, n)
	for i := range keys {
		keys[i] = rand.Uint64()
	}
	b.Run("get/hashmap", func(b *testing.B) {
		m := hashmap.New[uint64, *session]()
		for _, k := range keys {
			m.Set(k, &session{})
		}
		b.RunParallel(func(pb *testing.PB) {
			r := rand.New(rand.NewPCG(rand.Uint64(), 1))
			for pb.Next() {
				if _, ok := m.Get(keys[r.IntN(n)]); !ok {
					b.Error("missing")
				}
			}
		})
	})
	b.Run("get/sync.Map", func(b *testing.B) {
		var m sync.Map
		for _, k := range keys {
			m.Store(k, &session{})
		}
		b.RunParallel(func(pb *testing.PB) {
			r := rand.New(rand.NewPCG(rand.Uint64(), 1))
			for pb.Next() {
				if _, ok := m.Load(keys[r.IntN(n)]); !ok {
					b.Error("missing")
				}
			}
		})
	})
}

type hmTable struct {
	m *hashmap.Map[uint32, *session]
}

func (t hmTable) get(k uint32) (*session, bool) { return t.m.Get(k) }
func (t hmTable) set(k uint32, s *session)      { t.m.Set(k, s) }
func (t hmTable) del(k uint32)                  { t.m.Del(k) }

type smTable struct{ m sync.Map }

func (t *smTable) get(k uint32) (*session, bool) {
	v, ok := t.m.Load(k)
	if !ok {
		return nil, false
	}
	return v.(*session), true
}
func (t *smTable) set(k uint32, s *session) { t.m.Store(k, s) }
func (t *smTable) del(k uint32)             { t.m.Delete(k) }

// BenchmarkServiceHeartbeat is the service's own cost of one heartbeat,
// without sockets: open the record, decode, process, encode, seal.
func BenchmarkServiceHeartbeat(b *testing.B) {
	f := newFixture(b, Options{})
	c := f.light(b, "SYS-CPU")
	if _, _, _, err := c.Exchange(c.NewHeartbeat(), 10*time.Second); err != nil {
		b.Fatal(err)
	}
	var sess *session
	f.svc.sessions.Range(func(_ uint32, s *session) bool { sess = s; return false })
	h := c.NewHeartbeat()
	enc, _ := hb.EncodeHeartbeat(h)
	w := f.svc.newWorker(nil)
	var recs [][]byte
	for i := 0; i < b.N; i++ {
		recs = append(recs, c.rc.seal(nil, ctApplicationData, c.sendSeq.Add(1), enc))
	}
	from := sess.addr
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		r, _, err := parseRecord(recs[i], cidLen)
		if err != nil {
			b.Fatal(err)
		}
		_, payload, err := sess.crypto.open(r)
		if err != nil {
			b.Fatal(err)
		}
		sess.window.accept(r.seq)
		hbm, err := hb.DecodeHeartbeat(payload)
		if err != nil {
			b.Fatal(err)
		}
		reply := f.svc.process(sess.dev, hbm, ChannelDTLS, from, sess.id, w.now, maxDTLSWork)
		out, _ := hb.EncodeReply(reply)
		w.out = sess.crypto.seal(w.out[:0], ctApplicationData, sess.sendSeq.Add(1), out)
	}
}
