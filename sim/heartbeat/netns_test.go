package heartbeat

import (
	"net"
	"testing"
	"time"

	hb "github.com/dcagent/dcagent/agent/heartbeat"
	"github.com/dcagent/dcagent/internal/realparts"
)

// TestReconnectAfterAddressChangeInNamespace runs the agent in a network
// namespace of its own, joined by a veth pair to a namespace where the
// service listens, and watches the agent's namespace through netlink.
// The agent's address is removed and a new one added, with its interval
// and back-off set to minutes: it must be heard again from the new
// address in under a second, on the same DTLS session (connection ID),
// with no new handshake at the service.
// nsSetup is a service in one namespace and an agent's namespace joined
// to it by a veth pair; the agent's side has no address yet.
type nsSetup struct {
	agentNS *realparts.NetNS
	svc     *fixture
	udp     *net.UDPConn
	seen    <-chan Seen
}

func newNSSetup(t *testing.T) *nsSetup {
	t.Helper()
	agentNS := realparts.NewNetNS(t, "hbagent")
	backendNS := realparts.NewNetNS(t, "hbbackend")
	realparts.Veth(t, agentNS, "veth0", backendNS, "veth1")
	if err := backendNS.AddAddr("veth1", "192.0.2.1/24"); err != nil {
		t.Fatal(err)
	}
	b := newFixture(t, Options{})
	var udp *net.UDPConn
	if err := backendNS.Do(func() (err error) {
		udp, err = net.ListenUDP("udp", &net.UDPAddr{IP: net.ParseIP("192.0.2.1")})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if err := b.svc.ServeUDP(udp); err != nil {
		t.Fatal(err)
	}
	seen, unsub := b.svc.Subscribe(64)
	t.Cleanup(unsub)
	return &nsSetup{agentNS: agentNS, svc: b, udp: udp, seen: seen}
}

// startAgent runs an agent in the agent namespace, with netlink watching
// that namespace, and its interval and back-off set to minutes.
func (s *nsSetup) startAgent(t *testing.T, systemID string) *runningAgent {
	cfg := agentConfig(s.udp.LocalAddr().String(), "")
	cfg.Heartbeat.Interval = 10 * time.Minute
	cfg.Heartbeat.BackoffMin = 5 * time.Minute
	cfg.Heartbeat.BackoffMax = 10 * time.Minute
	cfg.Heartbeat.ReplyTimeout = 2 * time.Second
	listen := func() (pc net.PacketConn, err error) {
		err = s.agentNS.Do(func() error {
			// The agent's own default: a socket connected to the backend.
			pc, err = hb.DialUDP(s.udp.LocalAddr().(*net.UDPAddr))
			return err
		})
		return pc, err
	}
	return startAgent(t, &backend{fixture: s.svc}, systemID, cfg, hb.Options{
		ListenPacket: listen,
		NetworkWatch: hb.NetlinkWatch(s.agentNS.Handle),
	})
}

func TestReconnectAfterAddressChangeInNamespace(t *testing.T) {
	ns := newNSSetup(t)
	if err := ns.agentNS.AddAddr("veth0", "192.0.2.10/24"); err != nil {
		t.Fatal(err)
	}
	a := ns.startAgent(t, "SYS-NETNS")
	seen, b, agentNS := ns.seen, ns.svc, ns.agentNS
	first := nextSeen(t, seen, "SYS-NETNS", 20*time.Second, nil)
	if first.Addr.Addr().String() != "192.0.2.10" {
		t.Fatalf("first heartbeat from %s", first.Addr)
	}

	// The address goes: the agent tries at once (netlink), finds no
	// route, and settles into its back-off of minutes.
	if err := agentNS.DelAddr("veth0", "192.0.2.10/24"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "failed tries after the address went", func() bool { return a.Status().ConsecutiveFailures > 0 })
	time.Sleep(2500 * time.Millisecond) // past the settle window: now in the long back-off

	added := time.Now()
	if err := agentNS.AddAddr("veth0", "192.0.2.11/24"); err != nil {
		t.Fatal(err)
	}
	again := nextSeen(t, seen, "SYS-NETNS", 30*time.Second, func(e Seen) bool { return e.Addr.Addr().String() == "192.0.2.11" })
	took := again.At.Sub(added)
	waitFor(t, "reconnect measured", func() bool { return a.Status().LastReconnect != nil })
	rc := a.Status().LastReconnect
	t.Logf("heard from 192.0.2.11 %s after the address was added; agent: %s from the netlink event (%q) to the reply, %d round trip(s), handshake %v",
		took, rc.Took, rc.Reason, rc.RoundTrips, rc.Handshake)
	if took >= time.Second {
		t.Fatalf("heard again %s after the new address, want under 1s", took)
	}
	if again.SessionID != first.SessionID || rc.Handshake || rc.RoundTrips != 1 {
		t.Fatalf("session %d then %d, reconnect %+v: want the same session, no handshake", first.SessionID, again.SessionID, rc)
	}
	if st := b.svc.Stats(); st.Handshakes != 1 {
		t.Fatalf("%d handshakes at the service, want 1", st.Handshakes)
	}
}

// TestFirstSessionWhenAddressAppears starts the agent before its
// namespace has an address (a device booting before its network): it
// fails and waits out a back-off of minutes, until netlink reports the
// address; then it makes its first session at once: a handshake (3 round
// trips with the cookie exchange) and the heartbeat.
func TestFirstSessionWhenAddressAppears(t *testing.T) {
	ns := newNSSetup(t)
	a := ns.startAgent(t, "SYS-BOOT")
	waitFor(t, "failed tries without an address", func() bool { return a.Status().ConsecutiveFailures > 0 })
	time.Sleep(500 * time.Millisecond)
	added := time.Now()
	if err := ns.agentNS.AddAddr("veth0", "192.0.2.20/24"); err != nil {
		t.Fatal(err)
	}
	e := nextSeen(t, ns.seen, "SYS-BOOT", 30*time.Second, nil)
	took := e.At.Sub(added)
	waitFor(t, "reconnect measured", func() bool { return a.Status().LastReconnect != nil })
	rc := a.Status().LastReconnect
	t.Logf("first heartbeat %s after the address was added; agent: %s from the netlink event to the reply, %d round trips, handshake %v",
		took, rc.Took, rc.RoundTrips, rc.Handshake)
	if took >= time.Second || !rc.Handshake || rc.RoundTrips != 4 {
		t.Fatalf("took %s, reconnect %+v", took, rc)
	}
}
