package heartbeat

import (
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	hb "github.com/dcagent/dcagent/agent/heartbeat"
)

// session is one established DTLS session, served by the record layer.
// Its id is the connection ID the device puts in every record.
type session struct {
	id      uint32
	crypto  *recordCrypto
	dev     *device
	udp     *net.UDPConn
	created time.Time
	sendSeq atomic.Uint64
	// lastSeen is Unix nanoseconds of the last authenticated record.
	lastSeen atomic.Int64
	// inGrace: the handshake's last flight is kept (flight, under mu) to
	// answer a retransmission, until the first heartbeat or
	// handshakeGrace; graceKey is its entry in Service.grace.
	inGrace  atomic.Bool
	graceKey string

	mu     sync.Mutex
	window replayWindow
	addr   netip.AddrPort // where replies go: the source of the newest record
	flight []byte
}

// worker is one reader goroutine's scratch space.
type worker struct {
	conn *net.UDPConn
	in   []byte
	oob  []byte
	out  []byte
	now  time.Time
}

func (s *Service) newWorker(conn *net.UDPConn) *worker {
	return &worker{conn: conn, in: make([]byte, 64<<10), oob: make([]byte, 256), out: make([]byte, 0, 2048)}
}

// readLoop reads datagrams and handles each one to the end, reply
// included, on this goroutine.
func (s *Service) readLoop(conn *net.UDPConn) {
	defer s.wg.Done()
	w := s.newWorker(conn)
	for {
		n, oobn, _, from, err := conn.ReadMsgUDPAddrPort(w.in, w.oob)
		if err != nil {
			if errors.Is(err, net.ErrClosed) || s.ctx.Err() != nil {
				return
			}
			s.log.Debug("udp read", "err", err)
			time.Sleep(time.Millisecond) // never spin on a failing socket
			continue
		}
		w.now = time.Now()
		if arrived, drops, ok := parseControl(w.oob[:oobn]); ok {
			for {
				cur := s.stats.kernelDrops.Load()
				if int64(drops) <= cur || s.stats.kernelDrops.CompareAndSwap(cur, int64(drops)) {
					break
				}
			}
			if s.opts.ShedAfter > 0 && !arrived.IsZero() && w.now.Sub(arrived) > s.opts.ShedAfter {
				s.stats.shed.Add(1)
				continue
			}
		}
		from = netip.AddrPortFrom(from.Addr().Unmap(), from.Port())
		s.handleDatagram(w, w.in[:n], from)
	}
}

func (s *Service) handleDatagram(w *worker, b []byte, from netip.AddrPort) {
	if len(b) >= recordHeaderLen+cidLen && b[0] == ctConnectionID {
		if sess, ok := s.sessions.Get(binary.BigEndian.Uint32(b[11 : 11+cidLen])); ok {
			s.handleSession(w, sess, b, from)
			return
		}
	}
	s.handleUnrouted(w, b, from)
}

// handleSession handles the records of a datagram for a known session.
func (s *Service) handleSession(w *worker, sess *session, b []byte, from netip.AddrPort) {
	for rest := b; len(rest) > 0; {
		r, next, err := parseRecord(rest, cidLen)
		if err != nil {
			s.stats.badRecords.Add(1)
			return
		}
		rest = next
		// After the handshake a device sends only connection-ID records
		// of epoch 1; the epoch-0 records of a retransmitted flight reach
		// pion by address, not through here.
		if r.outerType != ctConnectionID || r.epoch != 1 || binary.BigEndian.Uint32(r.cid) != sess.id {
			continue
		}
		sess.mu.Lock()
		fresh := sess.window.fresh(r.seq)
		sess.mu.Unlock()
		if !fresh {
			s.stats.replays.Add(1)
			continue
		}
		ct, payload, err := sess.crypto.open(r)
		if err != nil {
			s.stats.badRecords.Add(1)
			continue
		}
		sess.mu.Lock()
		if !sess.window.fresh(r.seq) { // a concurrent reader took it first
			sess.mu.Unlock()
			s.stats.replays.Add(1)
			continue
		}
		if sess.window.accept(r.seq) && from != sess.addr {
			// RFC 9146 section 6: the newest authenticated record moves
			// the peer. No handshake: this is what connection IDs are for.
			sess.addr = from
			s.stats.addrMove.Add(1)
		}
		to := sess.addr
		sess.mu.Unlock()
		sess.lastSeen.Store(w.now.UnixNano())

		switch ct {
		case ctApplicationData:
			s.answer(w, sess, payload, to)
		case ctAlert:
			if len(payload) >= 2 && (payload[0] == 2 || payload[1] == 0) { // fatal, or close_notify
				s.dropSession(sess, "alert from device")
				return
			}
		case ctHandshake:
			// The device's Finished again: it did not get ours.
			s.resendFlight(sess, to)
		}
	}
}

// answer handles one heartbeat and sends its reply.
func (s *Service) answer(w *worker, sess *session, payload []byte, to netip.AddrPort) {
	h, err := hb.DecodeHeartbeat(payload)
	if err != nil {
		s.stats.badMessages.Add(1)
		s.log.Debug("bad heartbeat", "system_id", sess.dev.id, "peer", to.String(), "err", err)
		return
	}
	if sess.inGrace.Load() {
		s.endGrace(sess) // the device is done with the handshake
	}
	reply := s.process(sess.dev, h, ChannelDTLS, to, sess.id, w.now, maxDTLSWork)
	enc, err := hb.EncodeReply(reply)
	if err != nil {
		s.stats.replyErrors.Add(1)
		s.log.Warn("encode reply", "system_id", sess.dev.id, "err", err)
		return
	}
	w.out = sess.crypto.seal(w.out[:0], ctApplicationData, sess.sendSeq.Add(1), enc)
	if _, err := sess.udp.WriteToUDPAddrPort(w.out, to); err != nil {
		s.stats.replyErrors.Add(1)
		return
	}
	s.stats.dtlsHeartbeats.Add(1)
}

// dropSession forgets a session.
func (s *Service) dropSession(sess *session, why string) {
	if !s.sessions.Del(sess.id) {
		return
	}
	d := sess.dev
	d.mu.Lock()
	if d.session == sess {
		d.session = nil
	}
	d.mu.Unlock()
	s.endGrace(sess)
	s.log.Debug("session dropped", "system_id", d.id, "session", sess.id, "why", why)
}
