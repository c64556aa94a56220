package realparts

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
)

func TestNetNSVethAddressesAndSockets(t *testing.T) {
	a := NewNetNS(t, "a")
	b := NewNetNS(t, "b")
	Veth(t, a, "veth0", b, "veth1")
	if err := a.AddAddr("veth0", "192.0.2.10/24"); err != nil {
		t.Fatal(err)
	}
	if err := b.AddAddr("veth1", "192.0.2.1/24"); err != nil {
		t.Fatal(err)
	}

	// A UDP echo made inside b, reached from a socket made inside a.
	var srv *net.UDPConn
	if err := b.Do(func() (err error) {
		srv, err = net.ListenUDP("udp", &net.UDPAddr{IP: net.ParseIP("192.0.2.1"), Port: 0})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	go func() {
		buf := make([]byte, 64)
		for {
			n, from, err := srv.ReadFromUDP(buf)
			if err != nil {
				return
			}
			srv.WriteToUDP(buf[:n], from)
		}
	}()
	var cli *net.UDPConn
	if err := a.Do(func() (err error) {
		cli, err = net.DialUDP("udp", nil, srv.LocalAddr().(*net.UDPAddr))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	cli.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := cli.Write([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 64)
	n, err := cli.Read(buf)
	if err != nil || string(buf[:n]) != "ping" {
		t.Fatalf("echo across the veth: %q %v", buf[:n], err)
	}
	if got := cli.LocalAddr().(*net.UDPAddr).IP.String(); got != "192.0.2.10" {
		t.Fatalf("client address %s", got)
	}

	// The test's own process is not in either namespace.
	if err := a.Do(func() error { return nil }); err != nil {
		t.Fatal(err)
	}
	if ls, _ := netlink.LinkByName("veth0"); ls != nil {
		t.Fatal("veth0 leaked into the test's own namespace")
	}

	// Addresses change and netlink sees it in the namespace.
	nl := a.Netlink(t)
	link, _ := nl.LinkByName("veth0")
	if err := a.DelAddr("veth0", "192.0.2.10/24"); err != nil {
		t.Fatal(err)
	}
	if err := a.AddAddr("veth0", "192.0.2.11/24"); err != nil {
		t.Fatal(err)
	}
	addrs, err := nl.AddrList(link, netlink.FAMILY_V4)
	if err != nil || len(addrs) != 1 || addrs[0].IP.String() != "192.0.2.11" {
		t.Fatalf("addresses %v %v", addrs, err)
	}

	out, err := a.Command(context.Background(), "ip", "-4", "addr", "show", "veth0").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "192.0.2.11/24") {
		t.Fatalf("ip inside the namespace: %s %v", out, err)
	}
}

func TestNetNSRefusesRealAddresses(t *testing.T) {
	a := NewNetNS(t, "refuse")
	for _, cidr := range []string{"10.0.0.1/24", "8.8.8.8/32", "2001:4860::1/64", "169.254.169.254/32"} {
		err := a.AddAddr("lo", cidr)
		if err == nil || !strings.Contains(err.Error(), "documentation addresses only") {
			t.Errorf("%s: %v", cidr, err)
		}
	}
	if err := a.AddAddr("lo", "not an address"); err == nil {
		t.Error("garbage accepted")
	}
	if err := a.AddAddr("nosuchlink", "192.0.2.5/32"); err == nil || !strings.Contains(err.Error(), "nosuchlink") {
		t.Errorf("missing link: %v", err)
	}
	if err := a.AddAddr("lo", "2001:db8::5/128"); err != nil {
		t.Errorf("documentation IPv6: %v", err)
	}
}
