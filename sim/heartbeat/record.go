package heartbeat

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/binary"
	"encoding/gob"
	"errors"
	"fmt"
	"hash"
	"slices"

	"github.com/pion/dtls/v3"
	"github.com/pion/dtls/v3/pkg/crypto/prf"
)

// This file is the service's own DTLS 1.2 record layer for established
// sessions (RFC 6347 section 4.1, RFC 5288 AES-GCM, RFC 9146 connection
// IDs). pion/dtls runs every handshake; once one is done, the session's
// keys are taken from pion's exported state and pion's connection (with
// its goroutines and buffers) is let go. From then on a heartbeat costs
// one map lookup, one AES-GCM open and one seal on the reader goroutine
// that received it, and a session costs a few hundred bytes instead of a
// pion connection's goroutines and buffers.

// DTLS content types (RFC 6347, RFC 9146).
const (
	ctChangeCipherSpec = 20
	ctAlert            = 21
	ctHandshake        = 22
	ctApplicationData  = 23
	ctConnectionID     = 25
)

const (
	recordHeaderLen  = 13 // type, version, epoch, sequence number, length
	explicitNonceLen = 8
	gcmTagLen        = 16
	// recordOverhead is what AES-GCM adds to a record's payload.
	recordOverhead = explicitNonceLen + gcmTagLen
	maxSeq         = 1<<48 - 1
)

var dtls12 = [2]byte{0xfe, 0xfd}

// exportedState mirrors the fields of pion/dtls v3's serialized State that
// the record layer needs. State.MarshalBinary writes that struct with
// encoding/gob, which matches fields by name, so this mirror reads it
// without reaching into pion's internals; TestRecordLayerTalksToPion
// fails if a pion upgrade renames them.
type exportedState struct {
	HandshakeComplete  bool
	LocalEpoch         uint16
	LocalRandom        [32]byte
	RemoteRandom       [32]byte
	CipherSuiteID      uint16
	MasterSecret       []byte
	SequenceNumber     uint64
	PeerCertificates   [][]byte
	LocalConnectionID  []byte
	RemoteConnectionID []byte
	IsClient           bool
}

func exportConn(c *dtls.Conn) (*exportedState, error) {
	st, ok := c.ConnectionState()
	if !ok {
		return nil, errors.New("dtls state not available")
	}
	raw, err := st.MarshalBinary()
	if err != nil {
		return nil, fmt.Errorf("export dtls state: %w", err)
	}
	var e exportedState
	if err := gob.NewDecoder(bytes.NewReader(raw)).Decode(&e); err != nil {
		return nil, fmt.Errorf("read dtls state: %w", err)
	}
	if !e.HandshakeComplete || len(e.MasterSecret) == 0 || e.LocalEpoch != 1 {
		return nil, errors.New("dtls state: handshake not complete")
	}
	return &e, nil
}

// recordCrypto protects and opens application records of one established
// session, in both directions. It is safe for concurrent use: cipher.AEAD
// from crypto/aes keeps no per-call state.
type recordCrypto struct {
	read, write     cipher.AEAD
	readIV, writeIV [4]byte
	// readCIDLen is the length of the connection ID records to us carry
	// (ours); writeCID is the peer's, put into records we send (empty when
	// the peer asked for none, as the agent does).
	readCIDLen int
	writeCID   []byte
}

func newRecordCrypto(e *exportedState) (*recordCrypto, error) {
	var (
		keyLen int
		h      func() hash.Hash
	)
	switch dtls.CipherSuiteID(e.CipherSuiteID) {
	case dtls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, dtls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256:
		keyLen, h = 16, sha256.New
	case dtls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384, dtls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384:
		keyLen, h = 32, sha512.New384
	default:
		return nil, fmt.Errorf("cipher suite 0x%04x is not an AES-GCM suite this record layer knows", e.CipherSuiteID)
	}
	clientRandom, serverRandom := e.RemoteRandom, e.LocalRandom
	if e.IsClient {
		clientRandom, serverRandom = e.LocalRandom, e.RemoteRandom
	}
	keys, err := prf.GenerateEncryptionKeys(e.MasterSecret, clientRandom[:], serverRandom[:], 0, keyLen, 4, h)
	if err != nil {
		return nil, fmt.Errorf("derive record keys: %w", err)
	}
	readKey, readIV, writeKey, writeIV := keys.ClientWriteKey, keys.ClientWriteIV, keys.ServerWriteKey, keys.ServerWriteIV
	if e.IsClient {
		readKey, readIV, writeKey, writeIV = writeKey, writeIV, readKey, readIV
	}
	rc := &recordCrypto{readCIDLen: len(e.LocalConnectionID), writeCID: append([]byte(nil), e.RemoteConnectionID...)}
	if rc.read, err = newGCM(readKey); err != nil {
		return nil, err
	}
	if rc.write, err = newGCM(writeKey); err != nil {
		return nil, err
	}
	copy(rc.readIV[:], readIV)
	copy(rc.writeIV[:], writeIV)
	return rc, nil
}

func newGCM(key []byte) (cipher.AEAD, error) {
	b, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(b)
}

// seal appends to dst one epoch-1 record carrying payload as content type
// ct, with sequence number seq. With a peer connection ID it is a
// tls12_cid record whose inner plaintext carries the real type (RFC 9146
// section 4); otherwise a plain record.
func (rc *recordCrypto) seal(dst []byte, ct byte, seq uint64, payload []byte) []byte {
	const epoch = 1
	cid := rc.writeCID
	outerType, plainLen := ct, len(payload)
	if len(cid) > 0 {
		outerType, plainLen = ctConnectionID, len(payload)+1
	}
	dst = append(dst, outerType, dtls12[0], dtls12[1], 0, epoch)
	dst = binary.BigEndian.AppendUint16(dst, uint16(seq>>32))
	dst = binary.BigEndian.AppendUint32(dst, uint32(seq))
	dst = append(dst, cid...)
	dst = binary.BigEndian.AppendUint16(dst, uint16(explicitNonceLen+plainLen+gcmTagLen))
	explicit := uint64(epoch)<<48 | seq
	dst = binary.BigEndian.AppendUint64(dst, explicit)

	var nonce [12]byte
	copy(nonce[:4], rc.writeIV[:])
	binary.BigEndian.PutUint64(nonce[4:], explicit)
	var aadBuf [64]byte
	aad := rc.aad(aadBuf[:0], outerType, epoch, seq, cid, plainLen)

	body := len(dst)
	dst = append(dst, payload...)
	if len(cid) > 0 {
		dst = append(dst, ct) // DTLSInnerPlaintext: content, real type, no padding
	}
	dst = slices.Grow(dst, gcmTagLen) // so that Seal works in place
	sealed := rc.write.Seal(dst[body:body], nonce[:], dst[body:], aad)
	return dst[:body+len(sealed)]
}

// aad is the additional authenticated data of a record (RFC 5246 section
// 6.2.3.3, and RFC 9146 section 5 for tls12_cid records).
func (rc *recordCrypto) aad(dst []byte, outerType byte, epoch uint16, seq uint64, cid []byte, plainLen int) []byte {
	if outerType != ctConnectionID {
		dst = binary.BigEndian.AppendUint16(dst, epoch)
		dst = binary.BigEndian.AppendUint16(dst, uint16(seq>>32))
		dst = binary.BigEndian.AppendUint32(dst, uint32(seq))
		dst = append(dst, outerType, dtls12[0], dtls12[1])
		return binary.BigEndian.AppendUint16(dst, uint16(plainLen))
	}
	dst = append(dst, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff)
	dst = append(dst, ctConnectionID, byte(len(cid)), ctConnectionID, dtls12[0], dtls12[1])
	dst = binary.BigEndian.AppendUint16(dst, epoch)
	dst = binary.BigEndian.AppendUint16(dst, uint16(seq>>32))
	dst = binary.BigEndian.AppendUint32(dst, uint32(seq))
	dst = append(dst, cid...)
	return binary.BigEndian.AppendUint16(dst, uint16(plainLen))
}

// record is one parsed, not yet decrypted record at the start of a datagram.
type record struct {
	outerType byte
	epoch     uint16
	seq       uint64
	cid       []byte
	// raw is the whole record; body its protected part (explicit nonce,
	// ciphertext, tag).
	raw, body []byte
}

var errShortRecord = errors.New("record shorter than its header says")

// parseRecord reads the header of the first record in b. cidLen is the
// length of connection IDs in tls12_cid records. It returns the record and
// the rest of the datagram.
func parseRecord(b []byte, cidLen int) (record, []byte, error) {
	if len(b) < recordHeaderLen {
		return record{}, nil, errShortRecord
	}
	r := record{outerType: b[0], epoch: binary.BigEndian.Uint16(b[3:5])}
	r.seq = uint64(binary.BigEndian.Uint16(b[5:7]))<<32 | uint64(binary.BigEndian.Uint32(b[7:11]))
	off := 11
	if r.outerType == ctConnectionID {
		if len(b) < recordHeaderLen+cidLen {
			return record{}, nil, errShortRecord
		}
		r.cid = b[off : off+cidLen]
		off += cidLen
	}
	n := int(binary.BigEndian.Uint16(b[off : off+2]))
	off += 2
	if len(b) < off+n {
		return record{}, nil, errShortRecord
	}
	r.raw, r.body = b[:off+n], b[off:off+n]
	return r, b[off+n:], nil
}

var errOpen = errors.New("record failed authentication")

// open decrypts a record in place and returns its real content type and
// payload.
func (rc *recordCrypto) open(r record) (byte, []byte, error) {
	if len(r.body) < recordOverhead+1 {
		return 0, nil, errShortRecord
	}
	var nonce [12]byte
	copy(nonce[:4], rc.readIV[:])
	copy(nonce[4:], r.body[:explicitNonceLen])
	ct := r.body[explicitNonceLen:]
	var aadBuf [64]byte
	aad := rc.aad(aadBuf[:0], r.outerType, r.epoch, r.seq, r.cid, len(ct)-gcmTagLen)
	plain, err := rc.read.Open(ct[:0], nonce[:], ct, aad)
	if err != nil {
		return 0, nil, errOpen
	}
	if r.outerType != ctConnectionID {
		return r.outerType, plain, nil
	}
	// DTLSInnerPlaintext: content, real type, zero padding.
	i := len(plain) - 1
	for i >= 0 && plain[i] == 0 {
		i--
	}
	if i < 0 {
		return 0, nil, errors.New("inner plaintext holds no content type")
	}
	return plain[i], plain[:i], nil
}

// replayWindow is the anti-replay window of RFC 6347 section 4.1.2.6,
// 64 records wide.
type replayWindow struct {
	top  uint64 // highest sequence number accepted
	bits uint64 // bit i set: top-i was accepted
	used bool
}

// fresh says whether seq has not been accepted before and is not too old.
func (w *replayWindow) fresh(seq uint64) bool {
	if !w.used || seq > w.top {
		return true
	}
	d := w.top - seq
	return d < 64 && w.bits&(1<<d) == 0
}

// accept marks seq as seen and says whether it is the newest so far (a
// newer record may move the peer's address, RFC 9146 section 6).
func (w *replayWindow) accept(seq uint64) bool {
	if !w.used {
		w.used, w.top, w.bits = true, seq, 1
		return true
	}
	if seq > w.top {
		shift := seq - w.top
		if shift >= 64 {
			w.bits = 0
		} else {
			w.bits <<= shift
		}
		w.bits |= 1
		w.top = seq
		return true
	}
	w.bits |= 1 << (w.top - seq)
	return false
}
