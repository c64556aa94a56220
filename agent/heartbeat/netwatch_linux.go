package heartbeat

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"os"
	"runtime"
	"syscall"
	"time"

	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// NetlinkWatch watches the network through rtnetlink (link, address and
// route updates) in the namespace ns (netns.None() for the agent's own)
// and reports the changes that can break the path to the backend: an
// address added or removed (not loopback, not IPv6 link-local), a link
// coming up, a default route added, changed or removed.
//
// It reads the kernel's messages itself from one netlink socket, with
// golang.org/x/sys/unix, instead of through github.com/vishvananda/netlink:
// the three subscriptions the agent needs are a few dozen lines, and that
// library cost about 150 KiB of an arm64 binary that must stay under
// 8 MiB. Tests and the simulator still use the library to change the
// network they watch.
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

const netlinkGroups = unix.RTMGRP_LINK | unix.RTMGRP_IPV4_IFADDR | unix.RTMGRP_IPV6_IFADDR |
	unix.RTMGRP_IPV4_ROUTE | unix.RTMGRP_IPV6_ROUTE

// openNetlink makes a route-netlink socket subscribed to the groups above,
// inside ns when it is open (a socket stays in the namespace it was made
// in). The file is non-blocking, so that closing it ends a read.
func openNetlink(ns netns.NsHandle) (*os.File, error) {
	if ns.IsOpen() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		orig, err := netns.Get()
		if err != nil {
			return nil, err
		}
		defer orig.Close()
		if err := netns.Set(ns); err != nil {
			return nil, err
		}
		defer netns.Set(orig)
	}
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, unix.NETLINK_ROUTE)
	if err != nil {
		return nil, err
	}
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK, Groups: netlinkGroups}); err != nil {
		unix.Close(fd)
		return nil, err
	}
	return os.NewFile(uintptr(fd), "netlink"), nil
}

func watchNetlink(ctx context.Context, ns netns.NsHandle, changed func(string)) error {
	f, err := openNetlink(ns)
	if err != nil {
		return fmt.Errorf("netlink: %w", err)
	}
	defer f.Close()
	stop := context.AfterFunc(ctx, func() { f.Close() })
	defer stop()

	// Ask for every link first, so that only a link going up is news.
	req := make([]byte, unix.NLMSG_HDRLEN+unix.SizeofIfInfomsg)
	binary.NativeEndian.PutUint32(req[0:4], uint32(len(req)))
	binary.NativeEndian.PutUint16(req[4:6], unix.RTM_GETLINK)
	binary.NativeEndian.PutUint16(req[6:8], unix.NLM_F_REQUEST|unix.NLM_F_DUMP)
	binary.NativeEndian.PutUint32(req[8:12], 1)
	req[unix.NLMSG_HDRLEN] = unix.AF_UNSPEC
	if _, err := f.Write(req); err != nil {
		return fmt.Errorf("netlink: asking for links: %w", err)
	}

	up := map[int32]bool{}
	dumping := true
	buf := make([]byte, 64<<10)
	for {
		n, err := f.Read(buf)
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			if errors.Is(err, syscall.ENOBUFS) {
				return errors.New("the kernel dropped messages (receive buffer full)")
			}
			return err
		}
		msgs, err := syscall.ParseNetlinkMessage(buf[:n])
		if err != nil {
			return fmt.Errorf("netlink: %w", err)
		}
		for i := range msgs {
			m := &msgs[i]
			switch m.Header.Type {
			case unix.NLMSG_DONE:
				dumping = false
			case unix.NLMSG_ERROR:
				if len(m.Data) >= 4 && int32(binary.NativeEndian.Uint32(m.Data[:4])) != 0 {
					return fmt.Errorf("netlink: error %d", -int32(binary.NativeEndian.Uint32(m.Data[:4])))
				}
			case unix.RTM_NEWLINK, unix.RTM_DELLINK:
				index, name, now, ok := linkState(m)
				if !ok {
					continue
				}
				was := up[index]
				up[index] = now
				if now && !was && !(dumping && m.Header.Seq == 1) {
					changed("link " + name + " up")
				}
			case unix.RTM_NEWADDR, unix.RTM_DELADDR:
				if reason, ok := addressChange(m); ok {
					changed(reason)
				}
			case unix.RTM_NEWROUTE, unix.RTM_DELROUTE:
				if reason, ok := defaultRouteChange(m); ok {
					changed(reason)
				}
			}
		}
	}
}

// attrs returns the route attributes after a fixed-size message header.
func attrs(m *syscall.NetlinkMessage, fixed int) map[uint16][]byte {
	out := map[uint16][]byte{}
	if len(m.Data) < fixed {
		return out
	}
	b := m.Data[fixed:]
	for len(b) >= 4 {
		l := int(binary.NativeEndian.Uint16(b[0:2]))
		t := binary.NativeEndian.Uint16(b[2:4]) &^ (unix.NLA_F_NESTED | unix.NLA_F_NET_BYTEORDER)
		if l < 4 || l > len(b) {
			break
		}
		out[t] = b[4:l]
		b = b[min((l+3)&^3, len(b)):]
	}
	return out
}

// linkState reads a link message: its index, name and whether it is up
// (administratively up, and operationally up or "unknown", which is what
// interfaces without carrier reporting say).
func linkState(m *syscall.NetlinkMessage) (index int32, name string, up, ok bool) {
	if len(m.Data) < unix.SizeofIfInfomsg {
		return 0, "", false, false
	}
	index = int32(binary.NativeEndian.Uint32(m.Data[4:8]))
	flags := binary.NativeEndian.Uint32(m.Data[8:12])
	if flags&unix.IFF_LOOPBACK != 0 {
		return 0, "", false, false
	}
	a := attrs(m, unix.SizeofIfInfomsg)
	if v := a[unix.IFLA_IFNAME]; len(v) > 0 {
		name = string(v[:max(0, len(v)-1)])
	}
	oper := uint8(0)
	if v := a[unix.IFLA_OPERSTATE]; len(v) > 0 {
		oper = v[0]
	}
	const operUnknown, operUp = 0, 6
	up = m.Header.Type == unix.RTM_NEWLINK && flags&unix.IFF_UP != 0 && (oper == operUp || oper == operUnknown)
	return index, name, up, true
}

func addressChange(m *syscall.NetlinkMessage) (string, bool) {
	if len(m.Data) < unix.SizeofIfAddrmsg {
		return "", false
	}
	prefix := int(m.Data[1])
	a := attrs(m, unix.SizeofIfAddrmsg)
	raw := a[unix.IFA_LOCAL]
	if raw == nil {
		raw = a[unix.IFA_ADDRESS]
	}
	if len(raw) != 4 && len(raw) != 16 {
		return "", false
	}
	ip := net.IP(raw)
	if ip.IsLoopback() || ip.IsLinkLocalUnicast() {
		return "", false
	}
	verb := "removed"
	if m.Header.Type == unix.RTM_NEWADDR {
		verb = "added"
	}
	return fmt.Sprintf("address %s/%d %s", ip, prefix, verb), true
}

// defaultRouteChange reports a default route (no destination prefix) in
// the main table set or removed.
func defaultRouteChange(m *syscall.NetlinkMessage) (string, bool) {
	if len(m.Data) < unix.SizeofRtMsg {
		return "", false
	}
	dstLen, table := m.Data[1], uint32(m.Data[4])
	a := attrs(m, unix.SizeofRtMsg)
	if v := a[unix.RTA_TABLE]; len(v) == 4 {
		table = binary.NativeEndian.Uint32(v)
	}
	if dstLen != 0 || (table != 0 && table != unix.RT_TABLE_MAIN) {
		return "", false
	}
	gw := "nothing"
	if v := a[unix.RTA_GATEWAY]; len(v) == 4 || len(v) == 16 {
		gw = net.IP(v).String()
	}
	verb := "removed"
	if m.Header.Type == unix.RTM_NEWROUTE {
		verb = "set"
	}
	return fmt.Sprintf("default route via %s %s", gw, verb), true
}
