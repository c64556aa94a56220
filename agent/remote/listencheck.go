package remote

import (
	"bufio"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// Socket is a socket of a process that can receive connections or
// datagrams from anyone: a TCP socket in LISTEN, or a UDP or raw socket
// that is not connected to one peer.
type Socket struct {
	Proto string `json:"proto"` // tcp, tcp6, udp, udp6, raw, raw6
	Local string `json:"local"` // address:port
	Inode uint64 `json:"inode"`
}

func (s Socket) String() string { return fmt.Sprintf("%s %s (inode %d)", s.Proto, s.Local, s.Inode) }

// ListeningSockets lists the sockets of process pid that accept traffic
// from the network: TCP sockets in LISTEN, and UDP and raw sockets without
// a connected peer. It reads the process's socket inodes from
// /proc/PID/fd and the tables of its network namespace from
// /proc/PID/net/{tcp,tcp6,udp,udp6,raw,raw6}. Unix sockets are not
// network sockets and are not listed. The agent's own list must be empty
// (the device listens on no port); the daemon's tests and `dcagent diag`
// check it.
func ListeningSockets(pid int) ([]Socket, error) {
	inodes, err := socketInodes(pid)
	if err != nil {
		return nil, err
	}
	var out []Socket
	for _, proto := range []string{"tcp", "tcp6", "udp", "udp6", "raw", "raw6"} {
		rows, err := readNetTable(filepath.Join("/proc", strconv.Itoa(pid), "net", proto))
		if err != nil {
			return nil, err
		}
		for _, r := range rows {
			if !inodes[r.inode] {
				continue
			}
			listening := false
			switch {
			case strings.HasPrefix(proto, "tcp"):
				listening = r.state == 0x0A // TCP_LISTEN
			default:
				listening = r.remotePort == 0 && isZeroAddr(r.remote)
			}
			if listening {
				out = append(out, Socket{Proto: proto, Local: r.local, Inode: r.inode})
			}
		}
	}
	return out, nil
}

// socketInodes returns the inodes of the sockets process pid holds open.
func socketInodes(pid int) (map[uint64]bool, error) {
	dir := filepath.Join("/proc", strconv.Itoa(pid), "fd")
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("remote: open file descriptors of process %d: %w", pid, err)
	}
	inodes := map[uint64]bool{}
	for _, e := range ents {
		link, err := os.Readlink(filepath.Join(dir, e.Name()))
		if err != nil {
			continue // closed meanwhile
		}
		if v, ok := strings.CutPrefix(link, "socket:["); ok {
			if n, err := strconv.ParseUint(strings.TrimSuffix(v, "]"), 10, 64); err == nil {
				inodes[n] = true
			}
		}
	}
	return inodes, nil
}

type netRow struct {
	local, remote string
	remotePort    int
	state         int
	inode         uint64
}

// readNetTable parses a /proc/net/{tcp,udp,raw}[6] table.
func readNetTable(path string) ([]netRow, error) {
	f, err := os.Open(path)
	if os.IsNotExist(err) {
		return nil, nil // no IPv6 in this kernel
	}
	if err != nil {
		return nil, fmt.Errorf("remote: %w", err)
	}
	defer f.Close()
	var rows []netRow
	sc := bufio.NewScanner(f)
	sc.Scan() // header
	for sc.Scan() {
		fl := strings.Fields(sc.Text())
		if len(fl) < 10 {
			continue
		}
		local, _, err1 := parseHexAddr(fl[1])
		remote, rport, err2 := parseHexAddr(fl[2])
		state, err3 := strconv.ParseUint(fl[3], 16, 8)
		inode, err4 := strconv.ParseUint(fl[9], 10, 64)
		if err1 != nil || err2 != nil || err3 != nil || err4 != nil {
			return nil, fmt.Errorf("remote: %s: unexpected line %q", path, sc.Text())
		}
		rows = append(rows, netRow{local: local, remote: remote, remotePort: rport, state: int(state), inode: inode})
	}
	return rows, sc.Err()
}

// parseHexAddr reads the kernel's ADDR:PORT, where ADDR is an IPv4 or IPv6
// address as 32-bit words in host (little-endian) order.
func parseHexAddr(s string) (string, int, error) {
	a, p, ok := strings.Cut(s, ":")
	if !ok {
		return "", 0, fmt.Errorf("no port in %q", s)
	}
	raw, err := hex.DecodeString(a)
	if err != nil || (len(raw) != 4 && len(raw) != 16) {
		return "", 0, fmt.Errorf("bad address %q", a)
	}
	for i := 0; i < len(raw); i += 4 {
		raw[i], raw[i+1], raw[i+2], raw[i+3] = raw[i+3], raw[i+2], raw[i+1], raw[i]
	}
	port, err := strconv.ParseUint(p, 16, 16)
	if err != nil {
		return "", 0, err
	}
	return net.JoinHostPort(net.IP(raw).String(), strconv.Itoa(int(port))), int(port), nil
}

func isZeroAddr(hostport string) bool {
	h, _, err := net.SplitHostPort(hostport)
	if err != nil {
		return false
	}
	ip := net.ParseIP(h)
	return ip != nil && ip.IsUnspecified()
}
