package remote

import (
	"bufio"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// listenHelper runs in a child process (see TestMain): it opens the
// sockets its mode names, says "ready", and waits for stdin to close.
func listenHelper(mode, dial string) {
	var keep []any
	must := func(v any, err error) {
		if err != nil {
			os.Stdout.WriteString("ERROR " + err.Error() + "\n")
			os.Exit(1)
		}
		keep = append(keep, v)
	}
	// Always: an outgoing TCP connection, a connected UDP socket and a
	// Unix listener, none of which is reachable from the network.
	must(net.Dial("tcp", dial))
	must(net.DialUDP("udp", nil, &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 9}))
	must(net.Listen("unix", os.TempDir()+"/listencheck-"+mode+".sock"))
	switch mode {
	case "tcp":
		must(net.Listen("tcp", "127.0.0.1:0"))
	case "tcp6":
		must(net.Listen("tcp6", "[::1]:0"))
	case "udp":
		must(net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)}))
	case "udp6-any":
		must(net.ListenPacket("udp", ":0"))
	}
	os.Stdout.WriteString("ready\n")
	bufio.NewReader(os.Stdin).ReadString('\n')
	_ = keep
	os.Remove(os.TempDir() + "/listencheck-" + mode + ".sock")
	os.Exit(0)
}

func TestListeningSockets(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()
	cases := map[string]string{"none": "", "tcp": "tcp 127.0.0.1:", "tcp6": "tcp6 [::1]:", "udp": "udp 127.0.0.1:", "udp6-any": "udp6 [::]:"}
	for mode, want := range cases {
		t.Run(mode, func(t *testing.T) {
			cmd := exec.Command(os.Args[0], "listen-helper", mode, ln.Addr().String())
			stdin, _ := cmd.StdinPipe()
			stdout, _ := cmd.StdoutPipe()
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			defer func() { stdin.Close(); cmd.Wait() }()
			line, _ := bufio.NewReader(stdout).ReadString('\n')
			if line != "ready\n" {
				t.Fatalf("helper: %q", line)
			}
			socks, err := ListeningSockets(cmd.Process.Pid)
			if err != nil {
				t.Fatal(err)
			}
			if want == "" {
				if len(socks) != 0 {
					t.Fatalf("a process with only outgoing and unix sockets listens on %v", socks)
				}
				return
			}
			if len(socks) != 1 || !strings.HasPrefix(socks[0].String(), want) {
				t.Fatalf("got %v, want one socket %q…", socks, want)
			}
		})
	}
	if _, err := ListeningSockets(1 << 30); err == nil {
		t.Fatal("a missing process gave no error")
	}
}

func TestParseHexAddr(t *testing.T) {
	cases := map[string]string{
		"0100007F:0016":                         "127.0.0.1:22",
		"00000000:0035":                         "0.0.0.0:53",
		"00000000000000000000000001000000:1F90": "[::1]:8080",
	}
	for in, want := range cases {
		got, _, err := parseHexAddr(in)
		if err != nil || got != want {
			t.Errorf("%s: %q %v, want %q", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "0100007F", "zz:0016", "0100007F:zz", "01007F:0016"} {
		if _, _, err := parseHexAddr(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}
