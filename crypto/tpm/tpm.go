// Package tpm keeps dcagent's device key in a TPM 2.0 (through go-tpm's
// tpm2 package) and registers the tpm: scheme with crypto/keystore.
//
// One connection per TPM serves the whole process: many TPMs (and swtpm)
// serve one client at a time, so Open hands out shares of a single
// connection and a mutex serialises every command sequence on it. The
// package resends commands the TPM answers with RETRY, YIELDED or TESTING,
// flushes the transient objects a previous run left behind when it
// connects, reconnects once when the connection breaks, and reads the
// TPM's own limits (TPM_PT_NV_BUFFER_MAX and others) instead of assuming
// them.
//
// Keys are made under the storage root key (the TCG ECC P-256 SRK
// template, a primary key the TPM derives from its own secret seed) with
// fixedTPM and fixedParent set: the TPM will not export them. Their
// wrapped blobs are kept in the state directory in the TSS2 PEM format; a
// copy of that directory is useless on any other TPM. The keys have no
// password and are not subject to dictionary-attack lockout (noDA): the
// TPM's boundary, not a password, is what protects them.
//
// The same connection offers what else the agent needs from the TPM:
// monotonic NV counters (Counter) for the audit log, and the evidence for
// enrollment that the device key lives in this TPM (Store.Attest and
// Store.ActivateCredential).
package tpm

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"
)

// Info is what the TPM says about itself.
type Info struct {
	Manufacturer string // TPM_PT_MANUFACTURER as 4 ASCII characters, e.g. "IBM ", "IFX ", "STM "
	Vendor       string // TPM_PT_VENDOR_STRING_1..4
	Firmware     string // TPM_PT_FIRMWARE_VERSION_1 and _2 in hex; their meaning is the vendor's
	NVBufferMax  int    // TPM_PT_NV_BUFFER_MAX: the most one NV read or write may carry
	InputBuffer  int    // TPM_PT_INPUT_BUFFER: the most a sized buffer parameter may carry
	MaxDigest    int    // TPM_PT_MAX_DIGEST
}

// String is one line for logs and `dcagent key show`.
func (i Info) String() string {
	s := fmt.Sprintf("manufacturer %q", strings.TrimSpace(i.Manufacturer))
	if v := strings.TrimSpace(i.Vendor); v != "" {
		s += fmt.Sprintf(" vendor %q", v)
	}
	if i.Firmware != "" {
		s += " firmware " + i.Firmware
	}
	return s
}

// TPM is the process's connection to one TPM, shared by everything that
// uses that TPM. Methods are safe for concurrent use.
type TPM struct {
	where string // device path or TCP address, the registry key
	isTCP bool
	log   *slog.Logger

	mu       sync.Mutex // serialises command sequences; guards the fields below
	conn     *retrier   // nil until connected and after a broken connection
	gen      uint64     // bumped at every connect: transient handles of older generations are gone
	refs     int
	info     Info
	haveInfo bool
	closed   bool

	retries atomic.Uint64
	sleep   func(time.Duration)
}

var shared struct {
	sync.Mutex
	m map[string]*TPM
}

// Open returns a share of the connection to the TPM at where: a device
// path (/dev/tpmrm0) or a host:port serving the raw command stream over
// TCP. Every Open needs a Close; the connection ends with the last one.
func Open(ctx context.Context, where string, log *slog.Logger) (*TPM, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	shared.Lock()
	defer shared.Unlock()
	if shared.m == nil {
		shared.m = map[string]*TPM{}
	}
	if t := shared.m[where]; t != nil {
		t.mu.Lock()
		t.refs++
		t.mu.Unlock()
		return t, nil
	}
	t := &TPM{where: where, isTCP: !strings.HasPrefix(where, "/"), log: log, refs: 1, sleep: time.Sleep}
	if err := t.do(ctx, func(transport.TPM) error { return nil }); err != nil {
		t.mu.Lock()
		if t.conn != nil {
			_ = t.conn.conn.Close()
		}
		t.mu.Unlock()
		return nil, err
	}
	shared.m[where] = t
	return t, nil
}

// Close gives back this share; the last one closes the connection. It
// flushes nothing persistent: keys and counters stay in the TPM.
func (t *TPM) Close() error {
	shared.Lock()
	defer shared.Unlock()
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.refs <= 0 {
		return nil
	}
	t.refs--
	if t.refs > 0 {
		return nil
	}
	if shared.m[t.where] == t {
		delete(shared.m, t.where)
	}
	t.closed = true
	if t.conn == nil {
		return nil
	}
	err := t.conn.conn.Close()
	t.conn = nil
	return err
}

// Where is the device path or TCP address of the TPM.
func (t *TPM) Where() string { return t.where }

// Info returns what the TPM said about itself when first connected.
func (t *TPM) Info() Info {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.info
}

// Retries counts the commands resent because the TPM answered RETRY,
// YIELDED or TESTING, since Open.
func (t *TPM) Retries() uint64 { return t.retries.Load() }

// Do runs fn with the TPM connection to itself, for commands this package
// has no method for. fn must flush the transient objects it loads. A
// broken connection is made again and fn run once more.
func (t *TPM) Do(ctx context.Context, fn func(tp transport.TPM) error) error {
	return t.do(ctx, fn)
}

// do runs fn with the TPM to itself. A broken connection is made again
// and fn run once more; fn must therefore be safe to repeat, and must
// check t.gen to know whether objects it loaded before are still there.
func (t *TPM) do(ctx context.Context, fn func(tp transport.TPM) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return errors.New("tpm: connection closed")
	}
	for attempt := 0; ; attempt++ {
		if t.conn == nil {
			if err := t.connectLocked(); err != nil {
				return err
			}
		}
		err := fn(t.conn)
		if err == nil || !isTransportError(err) || attempt > 0 {
			return err
		}
		t.log.Warn("tpm: connection broke; connecting again", "tpm", t.where, "err", err)
		_ = t.conn.conn.Close()
		t.conn = nil
	}
}

func (t *TPM) connectLocked() error {
	var (
		c   rawConn
		err error
	)
	if t.isTCP {
		c, err = dialTCP(t.where)
		if err != nil {
			return fmt.Errorf("tpm: cannot reach the TPM at %s: %w", t.where, err)
		}
	} else {
		c, err = openDevice(t.where)
		if errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("tpm: no TPM at %s: the kernel has no TPM device (is the tpm_crb or tpm_tis driver loaded? a virtual machine needs a vTPM)", t.where)
		}
		if errors.Is(err, fs.ErrPermission) {
			return fmt.Errorf("tpm: %s: permission denied (run as root or as a member of the tss group)", t.where)
		}
		if err != nil {
			return fmt.Errorf("tpm: %w", err)
		}
	}
	conn := &retrier{conn: c, retries: &t.retries, sleep: t.sleep}
	// Objects a previous client left loaded would fill the TPM's few
	// object slots (TPM_RC_OBJECT_MEMORY): on a TPM without a resource
	// manager, such as swtpm, they outlive the connection that made them.
	// Behind /dev/tpmrm0 the list holds only this connection's own.
	if err := flushAll(conn); err != nil {
		_ = c.Close()
		var ne net.Error
		if t.isTCP && errors.As(err, &ne) && ne.Timeout() {
			return fmt.Errorf("tpm: the TPM at %s accepted the connection but does not answer: swtpm serves one client at a time; is the dcagent daemon or another program using it? (%w)", t.where, err)
		}
		return fmt.Errorf("tpm: %s: %w", t.where, err)
	}
	if !t.haveInfo {
		info, err := readInfo(conn)
		if err != nil {
			_ = c.Close()
			return fmt.Errorf("tpm: %s: %w", t.where, err)
		}
		t.info, t.haveInfo = info, true
		t.log.Info("tpm: connected", "tpm", t.where, "info", info.String(), "nv_buffer_max", info.NVBufferMax)
	}
	if sc, ok := c.(*streamConn); ok {
		sc.timeout = commandTimeout // it answers: from now on, allow for slow key generation
	}
	t.conn = conn
	t.gen++
	return nil
}

// flushAll flushes every transient object and loaded session.
func flushAll(tp transport.TPM) error {
	for _, first := range []tpm2.TPMHandle{0x80000000, 0x02000000, 0x03000000} {
		handles, err := listHandles(tp, first)
		if err != nil {
			return err
		}
		for _, h := range handles {
			if _, err := (tpm2.FlushContext{FlushHandle: h}).Execute(tp); err != nil && !errors.Is(err, tpm2.TPMRCHandle) {
				return fmt.Errorf("flush stale handle 0x%08x: %w", uint32(h), err)
			}
		}
	}
	return nil
}

// listHandles lists the handles in the range that starts at first.
func listHandles(tp transport.TPM, first tpm2.TPMHandle) ([]tpm2.TPMHandle, error) {
	var out []tpm2.TPMHandle
	next := uint32(first)
	for {
		rsp, err := (tpm2.GetCapability{Capability: tpm2.TPMCapHandles, Property: next, PropertyCount: 64}).Execute(tp)
		if err != nil {
			return nil, fmt.Errorf("list handles: %w", err)
		}
		hl, err := rsp.CapabilityData.Data.Handles()
		if err != nil {
			return nil, fmt.Errorf("list handles: %w", err)
		}
		for _, h := range hl.Handle {
			if uint32(h)>>24 != uint32(first)>>24 {
				return out, nil
			}
			out = append(out, h)
			next = uint32(h) + 1
		}
		if !rsp.MoreData || len(hl.Handle) == 0 {
			return out, nil
		}
	}
}

// readInfo reads the fixed TPM properties this package uses.
func readInfo(tp transport.TPM) (Info, error) {
	props := map[tpm2.TPMPT]uint32{}
	next := uint32(tpm2.TPMPTManufacturer)
	for {
		rsp, err := (tpm2.GetCapability{Capability: tpm2.TPMCapTPMProperties, Property: next, PropertyCount: 64}).Execute(tp)
		if err != nil {
			return Info{}, fmt.Errorf("read TPM properties: %w", err)
		}
		pl, err := rsp.CapabilityData.Data.TPMProperties()
		if err != nil {
			return Info{}, fmt.Errorf("read TPM properties: %w", err)
		}
		for _, p := range pl.TPMProperty {
			props[p.Property] = p.Value
			next = uint32(p.Property) + 1
		}
		if !rsp.MoreData || len(pl.TPMProperty) == 0 || next > uint32(tpm2.TPMPTNVBufferMax) {
			break
		}
	}
	ascii := func(v uint32) string {
		b := []byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)}
		return strings.TrimRight(string(b), "\x00")
	}
	var vendor strings.Builder
	for pt := tpm2.TPMPTVendorString1; pt <= tpm2.TPMPTVendorString1+3; pt++ {
		vendor.WriteString(ascii(props[pt]))
	}
	fw1, fw2 := props[tpm2.TPMPTFirmwareVersion1], props[tpm2.TPMPTFirmwareVersion1+1]
	info := Info{
		Manufacturer: ascii(props[tpm2.TPMPTManufacturer]),
		Vendor:       vendor.String(),
		Firmware:     fmt.Sprintf("%08x.%08x", fw1, fw2), // vendor-specific: shown raw
		NVBufferMax:  int(props[tpm2.TPMPTNVBufferMax]),
		InputBuffer:  int(props[tpm2.TPMPTInputBuffer]),
		MaxDigest:    int(props[tpm2.TPMPTMaxDigest]),
	}
	if info.NVBufferMax == 0 {
		return Info{}, errors.New("the TPM reports no TPM_PT_NV_BUFFER_MAX")
	}
	return info, nil
}
