package remote

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
)

func TestHandshakeRoundTrip(t *testing.T) {
	var b bytes.Buffer
	if err := WriteHello(&b, "sess-0001"); err != nil {
		t.Fatal(err)
	}
	b.WriteString("session bytes")
	id, err := ReadHello(&b)
	if err != nil || id != "sess-0001" || b.String() != "session bytes" {
		t.Fatalf("%q %v, left %q", id, err, b.String())
	}
	b.Reset()
	WriteReply(&b, nil)
	if err := ReadReply(&b); err != nil {
		t.Fatal(err)
	}
	WriteReply(&b, errors.New("no such\nsession"))
	var re *RefusedError
	if err := ReadReply(&b); !errors.As(err, &re) || re.Reason != "no such session" {
		t.Fatalf("%v", err)
	}
	if err := WriteHello(io.Discard, "bad id!"); err == nil {
		t.Fatal("bad id written")
	}
	for _, bad := range []string{"", "DCRELAY/1 SESSION short\n", "DCRELAY/2 SESSION sess-0001\n", "HELLO\n", "DCRELAY/1 SESSION " + strings.Repeat("a", 200) + "\n", "DCRELAY/1 SESSION sess-0001"} {
		if _, err := ReadHello(strings.NewReader(bad)); !errors.Is(err, ErrHandshake) {
			t.Errorf("%q: %v", bad, err)
		}
	}
	for _, bad := range []string{"", "DCRELAY/1 ERR \n", "OK\n", "DCRELAY/1 OK"} {
		if err := ReadReply(strings.NewReader(bad)); !errors.Is(err, ErrHandshake) {
			t.Errorf("%q: %v", bad, err)
		}
	}
}

// FuzzRelayHandshake: both sides' readers never panic, never read past
// the first newline (the session's bytes follow it), and accept only what
// the writers produce.
func FuzzRelayHandshake(f *testing.F) {
	f.Add([]byte("DCRELAY/1 SESSION sess-0001\nSSH-2.0-OpenSSH_9.2\r\n"))
	f.Add([]byte("DCRELAY/1 OK\n"))
	f.Add([]byte("DCRELAY/1 ERR no such session\nrest"))
	f.Add([]byte("DCRELAY/1 SESSION \x00\xff\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		r := bytes.NewReader(data)
		id, err := ReadHello(r)
		nl := bytes.IndexByte(data, '\n')
		if err == nil {
			if !ValidSessionID(id) {
				t.Fatalf("accepted session id %q", id)
			}
			var w bytes.Buffer
			WriteHello(&w, id)
			if !bytes.Equal(w.Bytes(), data[:nl+1]) {
				t.Fatalf("accepted %q, which the writer would not write", data[:nl+1])
			}
		}
		if nl >= 0 && nl < maxHelloBytes && r.Len() != len(data)-nl-1 {
			t.Fatalf("ReadHello read past the newline: %d bytes left of %d", r.Len(), len(data)-nl-1)
		}
		r2 := bytes.NewReader(data)
		err = ReadReply(r2)
		var re *RefusedError
		if err == nil && !bytes.HasPrefix(data, []byte(replyOK+"\n")) {
			t.Fatalf("accepted %q as OK", data)
		}
		if errors.As(err, &re) && re.Reason == "" {
			t.Fatal("refusal without a reason")
		}
		if nl >= 0 && nl < maxReplyBytes && r2.Len() != len(data)-nl-1 {
			t.Fatal("ReadReply read past the newline")
		}
	})
}
