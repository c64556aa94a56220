package heartbeat

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/dcagent/dcagent/internal/realparts"
)

// The watcher reads rtnetlink itself: in a namespace made by the test, a
// link coming up, an address added and removed, and a default route set
// and removed each arrive as a reason; loopback and link-local do not.
func TestNetlinkWatchInNamespace(t *testing.T) {
	a := realparts.NewNetNS(t, "watch-a")
	b := realparts.NewNetNS(t, "watch-b")
	realparts.Veth(t, a, "veth0", b, "veth1")

	reasons := make(chan string, 64)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- NetlinkWatch(a.Handle)(ctx, func(r string) { reasons <- r }) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("watch: %v", err)
		}
	}()
	// Let the subscription and the first link dump settle.
	time.Sleep(300 * time.Millisecond)
	drain(reasons)

	expect := func(step string, want string, run func() error) {
		t.Helper()
		if err := run(); err != nil {
			t.Fatalf("%s: %v", step, err)
		}
		deadline := time.After(10 * time.Second)
		for {
			select {
			case r := <-reasons:
				if strings.Contains(r, want) {
					return
				}
			case <-deadline:
				t.Fatalf("%s: no reason containing %q", step, want)
			}
		}
	}
	ip := func(args ...string) func() error {
		return func() error {
			out, err := a.Command(context.Background(), "ip", args...).CombinedOutput()
			if err != nil {
				t.Logf("ip %v: %s", args, out)
			}
			return err
		}
	}
	expect("address added", "address 192.0.2.20/24 added", ip("addr", "add", "192.0.2.20/24", "dev", "veth0"))
	// Both ends start up: take veth0 down, then up again.
	if err := ip("link", "set", "veth0", "down")(); err != nil {
		t.Fatal(err)
	}
	expect("link up", "link veth0 up", ip("link", "set", "veth0", "up"))
	expect("default route", "default route via 192.0.2.1 set", ip("route", "add", "default", "via", "192.0.2.1"))
	expect("default route removed", "default route via 192.0.2.1 removed", ip("route", "del", "default"))
	expect("address removed", "address 192.0.2.20/24 removed", ip("addr", "del", "192.0.2.20/24", "dev", "veth0"))
	// Loopback changes are not news.
	if err := ip("addr", "add", "127.0.0.2/8", "dev", "lo")(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)
	for _, r := range drain(reasons) {
		if strings.Contains(r, "127.0.0.2") {
			t.Errorf("loopback reported: %s", r)
		}
	}
}

func drain(ch chan string) []string {
	var out []string
	for {
		select {
		case r := <-ch:
			out = append(out, r)
		default:
			return out
		}
	}
}
