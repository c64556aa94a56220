package eventstore

import (
	"crypto/ecdh"
	"crypto/rand"
	"encoding/base64"
	"strings"
	"testing"

	"github.com/dcagent/dcagent/agent/connecthome/sealed"
	"github.com/dcagent/dcagent/agent/event"
	"github.com/dcagent/dcagent/internal/testpki"
)

func sealedAlert(t testing.TB, vendor *ecdh.PrivateKey, ca *testpki.CA, systemID string) ([]byte, *event.Event) {
	e := alert(event.SeverityError, 1)
	e.SystemID = systemID
	enc, err := event.Marshal(e)
	if err != nil {
		t.Fatal(err)
	}
	dev := ca.Device(t, "SYS-MAIL")
	s, err := sealed.Seal(vendor.PublicKey(), &dev, enc)
	if err != nil {
		t.Fatal(err)
	}
	return s, e
}

func TestIngestMessageForms(t *testing.T) {
	ca := testpki.NewCA(t, "vendor CA")
	vendor, _ := ecdh.X25519().GenerateKey(rand.Reader)
	o := &sealed.Opener{Key: vendor, DeviceCAs: ca.Pool}
	st, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()

	s1, e1 := sealedAlert(t, vendor, ca, "SYS-MAIL")
	s2, e2 := sealedAlert(t, vendor, ca, "SYS-MAIL")
	armored := string(sealed.Armor([][]byte{s1}))
	// A relay that re-encoded the body as base64.
	b64 := base64.StdEncoding.EncodeToString([]byte(armored))
	var lines []string
	for len(b64) > 76 {
		lines = append(lines, b64[:76])
		b64 = b64[76:]
	}
	lines = append(lines, b64)
	mail := "From: <a@customer.test>\r\nTo: <events@vendor.test>\r\nContent-Transfer-Encoding: base64\r\n\r\n" + strings.Join(lines, "\r\n") + "\r\n"
	if n, d, err := st.IngestMessage([]byte(mail), ChannelSMTP, o); err != nil || n != 1 || d != 0 {
		t.Fatalf("base64 mail: %d stored, %d dup, %v", n, d, err)
	}
	// The same event again, as a plain FTPS file, with a new one.
	file := string(sealed.Armor([][]byte{s1, s2}))
	if n, d, err := st.IngestMessage([]byte(file), ChannelFTPS, o); err != nil || n != 1 || d != 1 {
		t.Fatalf("file: %d stored, %d dup, %v", n, d, err)
	}
	if r, _ := st.Get(e1.ID); r.Channel != ChannelSMTP {
		t.Fatalf("first copy's channel %q", r.Channel)
	}
	if _, ok := st.Get(e2.ID); !ok {
		t.Fatal("second event missing")
	}
	// An event claiming another device than the one that signed it.
	s3, _ := sealedAlert(t, vendor, ca, "SYS-OTHER")
	if n, _, err := st.IngestMessage(sealed.Armor([][]byte{s3}), ChannelSMTP, o); err == nil || n != 0 || !strings.Contains(err.Error(), "does not match") {
		t.Fatalf("foreign event: %d, %v", n, err)
	}
	if _, _, err := st.IngestMessage([]byte("hello"), ChannelSMTP, o); err == nil {
		t.Fatal("a message without sealed events was accepted")
	}
}

func FuzzExtractSealed(f *testing.F) {
	ca := testpki.NewCA(f, "vendor CA")
	vendor, _ := ecdh.X25519().GenerateKey(rand.Reader)
	s, _ := sealedAlert(f, vendor, ca, "SYS-MAIL")
	armored := sealed.Armor([][]byte{s})
	f.Add(armored)
	f.Add([]byte("From: <a@b>\r\nTo: <c@d>\r\nSubject: x\r\nContent-Transfer-Encoding: 7bit\r\n\r\n" + string(armored)))
	f.Add([]byte("Content-Transfer-Encoding: base64\r\n\r\nLS0tLS1CRUdJTg==\r\n"))
	f.Add([]byte("Content-Transfer-Encoding: quoted-printable\r\n\r\n=3D=3D\r\n"))
	opener := &sealed.Opener{Key: vendor, DeviceCAs: ca.Pool}
	f.Fuzz(func(t *testing.T, msg []byte) {
		blocks, err := ExtractSealed(msg)
		if err != nil {
			return
		}
		if len(blocks) == 0 {
			t.Fatal("no error and no blocks")
		}
		for _, b := range blocks {
			_, _ = opener.Open(b)
		}
	})
}
