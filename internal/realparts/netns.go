package realparts

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/netip"
	"os/exec"
	"runtime"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// NetNS is a network namespace a test made for itself (`ip netns add`),
// for tests where a link, an address or a route must change under a
// running program. It is deleted when the test ends. Addresses in it come
// from the documentation ranges only (192.0.2.0/24, 2001:db8::/32), so
// nothing a test does there can reach a real network.
type NetNS struct {
	Name   string
	Handle netns.NsHandle
}

// docRanges are the only prefixes AddAddr accepts.
var docRanges = []netip.Prefix{
	netip.MustParsePrefix("192.0.2.0/24"),
	netip.MustParsePrefix("2001:db8::/32"),
}

// NewNetNS makes a namespace named dcagent-<label>-<random> with its
// loopback up, and deletes it in t.Cleanup. It needs root (CI runs tests
// as root) and iproute2.
func NewNetNS(t testing.TB, label string) *NetNS {
	t.Helper()
	var r [4]byte
	rand.Read(r[:])
	name := fmt.Sprintf("dcagent-%s-%s", label, hex.EncodeToString(r[:]))
	if len(label) > 20 || strings.ContainsAny(label, "/ ") {
		t.Fatalf("realparts: namespace label %q: at most 20 characters, no / or space", label)
	}
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		t.Fatalf("realparts: ip netns add %s: %v: %s (this needs root and iproute2)", name, err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("ip", "netns", "del", name).CombinedOutput(); err != nil {
			t.Errorf("realparts: ip netns del %s: %v: %s", name, err, out)
		}
	})
	h, err := netns.GetFromName(name)
	if err != nil {
		t.Fatalf("realparts: open namespace %s: %v", name, err)
	}
	t.Cleanup(func() { h.Close() })
	n := &NetNS{Name: name, Handle: h}
	nl := n.netlink(t)
	lo, err := nl.LinkByName("lo")
	if err == nil {
		err = nl.LinkSetUp(lo)
	}
	if err != nil {
		t.Fatalf("realparts: %s: loopback up: %v", name, err)
	}
	return n
}

// Netlink returns a netlink handle working in the namespace, closed when
// the test ends.
func (n *NetNS) Netlink(t testing.TB) *netlink.Handle {
	t.Helper()
	return n.netlink(t)
}

func (n *NetNS) netlink(t testing.TB) *netlink.Handle {
	h, err := netlink.NewHandleAt(n.Handle)
	if err != nil {
		t.Fatalf("realparts: netlink handle in %s: %v", n.Name, err)
	}
	t.Cleanup(h.Close)
	return h
}

// Do runs fn on an operating-system thread inside the namespace and
// returns its error. Sockets fn opens belong to the namespace for good,
// whichever thread uses them later. The thread is thrown away afterwards
// rather than switched back, so no other goroutine ever runs in the
// namespace by accident.
func (n *NetNS) Do(fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		// Never unlocked: when this goroutine ends, the runtime ends its
		// thread with it.
		runtime.LockOSThread()
		if err := netns.Set(n.Handle); err != nil {
			errc <- fmt.Errorf("realparts: enter namespace %s: %w", n.Name, err)
			return
		}
		errc <- fn()
	}()
	return <-errc
}

// Command returns a command that runs name inside the namespace
// (`ip netns exec`).
func (n *NetNS) Command(ctx context.Context, name string, args ...string) *exec.Cmd {
	return exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", n.Name, name}, args...)...)
}

// Veth joins two namespaces (or a namespace to itself) with a veth pair:
// aName in a, bName in b, both up.
func Veth(t testing.TB, a *NetNS, aName string, b *NetNS, bName string) {
	t.Helper()
	ha := a.netlink(t)
	attrs := netlink.NewLinkAttrs()
	attrs.Name = aName
	veth := &netlink.Veth{LinkAttrs: attrs, PeerName: bName, PeerNamespace: netlink.NsFd(int(b.Handle))}
	if err := ha.LinkAdd(veth); err != nil {
		t.Fatalf("realparts: veth %s/%s – %s/%s: %v", a.Name, aName, b.Name, bName, err)
	}
	for _, end := range []struct {
		ns   *NetNS
		name string
	}{{a, aName}, {b, bName}} {
		h := end.ns.netlink(t)
		l, err := h.LinkByName(end.name)
		if err == nil {
			err = h.LinkSetUp(l)
		}
		if err != nil {
			t.Fatalf("realparts: %s: %s up: %v", end.ns.Name, end.name, err)
		}
	}
}

// AddAddr puts cidr (e.g. 192.0.2.10/24) on the link in the namespace.
// Only documentation addresses are allowed.
func (n *NetNS) AddAddr(link, cidr string) error {
	return n.addr(link, cidr, true)
}

// DelAddr removes cidr from the link in the namespace.
func (n *NetNS) DelAddr(link, cidr string) error {
	return n.addr(link, cidr, false)
}

func (n *NetNS) addr(link, cidr string, add bool) error {
	p, err := netip.ParsePrefix(cidr)
	if err != nil {
		return fmt.Errorf("realparts: address %q: %w", cidr, err)
	}
	if !isDocAddr(p.Addr()) {
		return fmt.Errorf("realparts: address %s is outside 192.0.2.0/24 and 2001:db8::/32: tests use documentation addresses only", p.Addr())
	}
	h, err := netlink.NewHandleAt(n.Handle)
	if err != nil {
		return fmt.Errorf("realparts: netlink handle in %s: %w", n.Name, err)
	}
	defer h.Close()
	l, err := h.LinkByName(link)
	if err != nil {
		return fmt.Errorf("realparts: %s: link %s: %w", n.Name, link, err)
	}
	a, err := netlink.ParseAddr(cidr)
	if err != nil {
		return fmt.Errorf("realparts: address %q: %w", cidr, err)
	}
	if add {
		err = h.AddrAdd(l, a)
	} else {
		err = h.AddrDel(l, a)
	}
	if err != nil {
		verb := map[bool]string{true: "add", false: "remove"}[add]
		return fmt.Errorf("realparts: %s: %s %s on %s: %w", n.Name, verb, cidr, link, err)
	}
	return nil
}

func isDocAddr(a netip.Addr) bool {
	a = a.Unmap()
	for _, p := range docRanges {
		if p.Contains(a) {
			return true
		}
	}
	return false
}
