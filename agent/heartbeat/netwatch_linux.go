package heartbeat

import (
	"context"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// NetlinkWatch watches the network through netlink (RTNLGRP link, address
// and route updates) in the namespace ns (netns.None() for the agent's
// own) and reports the changes that can break the path to the backend:
// an address added or removed (not loopback, not IPv6 link-local), a link
// coming up, a default route added, changed or removed.
func NetlinkWatch(ns netns.NsHandle) NetworkWatch {
	return func(ctx context.Context, changed func(reason string)) error {
		for {
			err := watchNetlink(ctx, ns, changed)
			if ctx.Err() != nil {
				return nil
			}
			// The subscription broke (the kernel dropped messages, say):
			// events may have been missed, so report one, and subscribe
			// again a little later.
			changed("netlink subscription restarted: " + err.Error())
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(time.Second):
			}
		}
	}
}

func watchNetlink(ctx context.Context, ns netns.NsHandle, changed func(string)) error {
	var nsp *netns.NsHandle
	if ns.IsOpen() {
		nsp = &ns
	}
	done := make(chan struct{})
	defer close(done)
	errs := make(chan error, 3)
	onErr := func(err error) {
		if ctx.Err() != nil {
			return // closing done makes netlink report a spurious EAGAIN
		}
		select {
		case errs <- err:
		default:
		}
	}
	addrs := make(chan netlink.AddrUpdate, 64)
	links := make(chan netlink.LinkUpdate, 64)
	routes := make(chan netlink.RouteUpdate, 64)
	if err := netlink.AddrSubscribeWithOptions(addrs, done, netlink.AddrSubscribeOptions{Namespace: nsp, ErrorCallback: onErr}); err != nil {
		return fmt.Errorf("subscribe to address updates: %w", err)
	}
	if err := netlink.LinkSubscribeWithOptions(links, done, netlink.LinkSubscribeOptions{Namespace: nsp, ErrorCallback: onErr}); err != nil {
		return fmt.Errorf("subscribe to link updates: %w", err)
	}
	if err := netlink.RouteSubscribeWithOptions(routes, done, netlink.RouteSubscribeOptions{Namespace: nsp, ErrorCallback: onErr}); err != nil {
		return fmt.Errorf("subscribe to route updates: %w", err)
	}

	// Which links are up now, so that only a link going up is news.
	up := map[int]bool{}
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		return fmt.Errorf("netlink handle: %w", err)
	}
	if ls, err := h.LinkList(); err == nil {
		for _, l := range ls {
			up[l.Attrs().Index] = linkIsUp(l)
		}
	}
	h.Close()

	for {
		select {
		case <-ctx.Done():
			return nil
		case err := <-errs:
			return err
		case u, ok := <-addrs:
			if !ok {
				return errors.New("address updates ended")
			}
			ip := u.LinkAddress.IP
			if ip.IsLoopback() || ip.IsLinkLocalUnicast() {
				continue
			}
			verb := "removed"
			if u.NewAddr {
				verb = "added"
			}
			changed(fmt.Sprintf("address %s %s", u.LinkAddress.String(), verb))
		case u, ok := <-links:
			if !ok {
				return errors.New("link updates ended")
			}
			a := u.Attrs()
			if a.Flags&net.FlagLoopback != 0 {
				continue
			}
			now := linkIsUp(u.Link) && u.Header.Type != unix.RTM_DELLINK
			was := up[a.Index]
			up[a.Index] = now
			if now && !was {
				changed("link " + a.Name + " up")
			}
		case u, ok := <-routes:
			if !ok {
				return errors.New("route updates ended")
			}
			if !isDefaultRoute(u.Route) || (u.Type != unix.RTM_NEWROUTE && u.Type != unix.RTM_DELROUTE) {
				continue
			}
			verb := "removed"
			if u.Type == unix.RTM_NEWROUTE {
				verb = "set"
			}
			changed(fmt.Sprintf("default route via %v %s", u.Gw, verb))
		}
	}
}

func linkIsUp(l netlink.Link) bool {
	a := l.Attrs()
	if a.Flags&net.FlagUp == 0 {
		return false
	}
	// Interfaces without carrier reporting say "unknown"; take that as up.
	return a.OperState == netlink.OperUp || a.OperState == netlink.OperUnknown
}

func isDefaultRoute(r netlink.Route) bool {
	if r.Table != 0 && r.Table != unix.RT_TABLE_MAIN {
		return false
	}
	if r.Dst == nil {
		return true
	}
	ones, _ := r.Dst.Mask.Size()
	return ones == 0
}
