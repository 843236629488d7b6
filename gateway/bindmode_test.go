package gateway_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"testing"
	"time"

	"github.com/fiorix/go-smpp/smpp/pdu/pdufield"
	"golang.org/x/text/encoding/charmap"
	"golang.org/x/text/encoding/unicode"

	"github.com/qxtd/qxtd/gateway"
	"github.com/qxtd/qxtd/queue"
	"github.com/qxtd/qxtd/segment"
	"github.com/qxtd/qxtd/smpp"
)

// TestUpstreamTransmitterReceiver: an SMSC that takes no transceivers (as
// one of SMPP 3.3, which has none) is bound as the README's bind_mode
// transmitter_receiver says: the messages go out on the transmitters
// only, and the receipts and a handset's reply come in on the receiver
// and reach the ESME. Health and the metrics count the receiver apart.
func TestUpstreamTransmitterReceiver(t *testing.T) {
	r, _ := twoWayRig(t, rigOpts{
		sim:      smpp.SimOptions{DLRDelay: 10 * time.Millisecond, NoTransceiver: true},
		upstream: func(u *gateway.UpstreamConfig) { u.Binds, u.Receivers = 2, 1 },
	})
	bob, err := r.bind("bob", "secret2", smpp.BindTransceiver)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "the transmitters and the receiver up", func() bool { return !r.gw.Health().Degraded() })
	want := gateway.UpstreamHealth{Name: "sim", BindsConfigured: 2, BindsUp: 2, ReceiversConfigured: 1, ReceiversUp: 1}
	if h := r.gw.Health().Upstreams[0]; h != want {
		t.Fatalf("health %+v, want %+v", h, want)
	}
	g := counters(t, r)
	if g["qxtd_upstream_receivers_up,upstream=sim"] != 1 || g["qxtd_upstream_receivers_configured,upstream=sim"] != 1 || g["qxtd_upstream_binds_up,upstream=sim"] != 2 {
		t.Fatalf("gauges %v", g)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	const n = 20
	ids := map[string]bool{}
	for i := range n {
		dst := []string{"13712345678", "13923412345"}[i%2]
		id, err := bob.submit(ctx, submitSM("", dst, fmt.Sprintf("over the transmitter %d", i)))
		if err != nil {
			t.Fatalf("submit %d: %v", i, err)
		}
		ids[id] = true
	}
	got := bob.waitReceipts(t, n, 20*time.Second)
	for id := range ids {
		if rc, ok := got[id]; !ok || rc.State != smpp.StateDelivered {
			t.Errorf("receipt of %s: %+v (present %v)", id, rc, ok)
		}
	}
	recv := r.sim.Received()
	if len(recv) != n {
		t.Fatalf("the SMSC received %d messages, want %d", len(recv), n)
	}
	for _, m := range recv {
		if m.Bind != smpp.BindTransmitter {
			t.Fatalf("message %s came on a %s bind", m.ID, m.Bind)
		}
	}

	if err := r.sim.InjectMO("13923412345", "106575002", "a reply on the receiver"); err != nil {
		t.Fatal(err)
	}
	mo := bob.waitMOs(t, 1)
	if moText(t, mo[0]) != "a reply on the receiver" {
		t.Fatalf("bob got %+v", mo[0])
	}

	for kind, wantPeak := range map[smpp.BindKind]int{smpp.BindTransmitter: 2, smpp.BindReceiver: 1, smpp.BindTransceiver: 0} {
		if _, peak := r.sim.BindsOfKind("up", kind); peak != wantPeak {
			t.Errorf("the SMSC saw at most %d %s binds, want %d", peak, kind, wantPeak)
		}
	}
}

// TestUpstreamOutbind: an SMSC that delivers by outbind (SMPP 3.4 §2.2.1)
// and takes no transceivers: qxtd binds a transmitter to send, and the
// SMSC connects to upstreams[].outbind_listen and sends outbind; qxtd
// answers with a bind_receiver on that connection, and the receipts and a
// reply come in on it and reach the ESME. The listener holds its bounds: a
// wrong password is closed unanswered, a silent connection at the
// timeout, one past the cap at once; a stop unbinds the session.
func TestUpstreamOutbind(t *testing.T) {
	ol := listen(t)
	r, _ := twoWayRig(t, rigOpts{
		sim: smpp.SimOptions{DLRDelay: 10 * time.Millisecond, NoTransceiver: true},
		upstream: func(u *gateway.UpstreamConfig) {
			u.Binds, u.Transmitters = 1, true
			u.Outbind = &gateway.OutbindConfig{Listener: ol, SystemID: "smsc", Password: "smscpw", Timeout: 300 * time.Millisecond}
		},
	})
	bob, err := r.bind("bob", "secret2", smpp.BindTransceiver)
	if err != nil {
		t.Fatal(err)
	}
	waitReady(t, r)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	outbinds := func(result string) float64 {
		return counters(t, r)["qxtd_upstream_outbinds_total,result="+result+",upstream=sim"]
	}
	if err := r.sim.Outbind(ctx, ol.Addr().String(), "smsc", "guess"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "the wrong password refused", func() bool { return outbinds("refused") == 1 })
	if err := r.sim.Outbind(ctx, ol.Addr().String(), "smsc", "smscpw"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "a session after the outbind", func() bool { return r.gw.Health().Upstreams[0].OutbindSessions == 1 })
	if now, _ := r.sim.BindsOfKind("up", smpp.BindReceiver); now != 1 {
		t.Fatalf("the SMSC has %d receivers, want the outbind's", now)
	}

	const n = 10
	var ids []string
	for i := range n {
		id, err := bob.submit(ctx, submitSM("", "13923412345", fmt.Sprintf("its receipt comes by outbind %d", i)))
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	got := bob.waitReceipts(t, n, 20*time.Second)
	for _, id := range ids {
		if got[id].State != smpp.StateDelivered {
			t.Errorf("receipt of %s: %+v", id, got[id])
		}
	}
	if err := r.sim.InjectMO("13923412345", "106575002", "a reply by outbind"); err != nil {
		t.Fatal(err)
	}
	if mo := bob.waitMOs(t, 1); moText(t, mo[0]) != "a reply by outbind" {
		t.Fatalf("bob got %+v", mo[0])
	}

	// The SMSC restarts behind connections that stay up: it forgets every
	// session. The transmitter learns it from its next submit
	// (ESME_RINVBNDSTS) and binds again; the outbind session, which sends
	// nothing, is closed with it, and the SMSC's new outbind takes its
	// place rather than a second one.
	r.sim.LoseBinds()
	lostID, err := bob.submit(ctx, submitSM("", "13923412345", "after the SMSC lost its sessions"))
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "the forgotten outbind session closed", func() bool { return r.gw.Health().Upstreams[0].OutbindSessions == 0 })
	if err := r.sim.Outbind(ctx, ol.Addr().String(), "smsc", "smscpw"); err != nil {
		t.Fatal(err)
	}
	if got := bob.waitReceipts(t, n+1, 20*time.Second); got[lostID].State != smpp.StateDelivered {
		t.Errorf("receipt after the SMSC lost its sessions: %+v", got[lostID])
	}
	if s := r.gw.Health().Upstreams[0].OutbindSessions; s != 1 {
		t.Errorf("%d outbind sessions after the SMSC outbound again, want 1", s)
	}

	// Bounds: silent connections hold the slots left (the session holds
	// one) until the timeout; one more is closed at once.
	var silent []net.Conn
	for range 8 {
		c, err := net.Dial("tcp", ol.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		silent = append(silent, c)
	}
	waitFor(t, 10*time.Second, "one connection past the cap closed", func() bool { return outbinds("full") >= 1 })
	waitFor(t, 10*time.Second, "the silent ones closed at the timeout", func() bool { return outbinds("failed") == 7 })
	for _, c := range silent {
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := c.Read(make([]byte, 16)); !errors.Is(err, io.EOF) {
			t.Errorf("a silent connection read %v, want EOF (closed unanswered)", err)
		}
	}
	if s := r.gw.Health().Upstreams[0].OutbindSessions; s != 1 {
		t.Errorf("%d outbind sessions after the abuse, want 1", s)
	}

	r.stop() // returns once the session is unbound and the listener closed
	if s := r.gw.Health().Upstreams[0].OutbindSessions; s != 0 {
		t.Errorf("%d outbind sessions after the stop", s)
	}
	if c, err := net.Dial("tcp", ol.Addr().String()); err == nil {
		c.Close()
		t.Error("the outbind listener still accepts after the stop")
	}
}

// TestUpstreamDefaultAlphabet: an SMSC whose default alphabet is Latin-1
// (upstreams[].default_alphabet latin1) gets a text GSM and Latin-1 both
// hold as data_coding 0x00 in Latin-1, one octet a character ('@' 0x40,
// 'ü' 0xFC, '[' one octet where GSM escapes it), and one with a
// character Latin-1 lacks (€) in UCS-2; a reply it sends as 0x00 is read
// as Latin-1.
func TestUpstreamDefaultAlphabet(t *testing.T) {
	r := newRig(t, rigOpts{
		sim:      smpp.SimOptions{DLRDelay: 10 * time.Millisecond},
		accounts: gateway.StaticAccounts{"esme": {Password: "pw", Account: gateway.Account{Signature: "[Shop]"}}},
		upstream: func(u *gateway.UpstreamConfig) { u.Segment.Alphabet = segment.AlphabetLatin1 },
	})
	e, err := r.bind("esme", "pw", smpp.BindTransceiver)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	latin1 := func(s string) []byte {
		b, err := charmap.ISO8859_1.NewEncoder().Bytes([]byte(s))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	for dst, text := range map[string]string{"13800000001": "Grüße [x] @ café_1", "13800000002": "5 € each"} {
		p := submitSM("1069", dst, "")
		_ = p.Fields().Set(pdufield.DataCoding, uint8(0x08))
		ucs2, err := unicode.UTF16(unicode.BigEndian, unicode.IgnoreBOM).NewEncoder().Bytes([]byte(text))
		if err != nil {
			t.Fatal(err)
		}
		_ = p.Fields().Set(pdufield.ShortMessage, ucs2)
		if _, err := e.submit(ctx, p); err != nil {
			t.Fatalf("submit %q: %v", text, err)
		}
	}
	got := map[string]smpp.SimMessage{}
	for _, m := range r.waitReceived(t, 2) {
		got[m.Dest] = m
	}
	if m := got["13800000001"]; m.DataCoding != 0 || !bytes.Contains(m.ShortMessage, latin1("Grüße [x] @ café_1")) {
		t.Errorf("the Latin-1 SMSC got data_coding 0x%02x % x, want 0x00 and the text in Latin-1", m.DataCoding, m.ShortMessage)
	}
	if m := got["13800000002"]; m.DataCoding != 0x08 {
		t.Errorf("a text with € went as data_coding 0x%02x, want UCS-2", m.DataCoding)
	}

	if err := r.sim.InjectDeliverSM(smpp.SM{SourceAddr: "13800000003", DestinationAddr: "106999", DataCoding: 0, ShortMessage: latin1("Olá, ¿qué tal? @home")}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "the reply in the inbox", func() bool {
		list, _, err := r.store.Inbox("", queue.InboxFilter{}, 0, 10)
		return err == nil && len(list) == 1
	})
	if list, _, _ := r.store.Inbox("", queue.InboxFilter{}, 0, 10); list[0].Text != "Olá, ¿qué tal? @home" {
		t.Errorf("the reply read %q, want it as Latin-1", list[0].Text)
	}
}

// TestUpstreamReceiverRebinds: an SMSC that restarted behind connections
// that stayed up forgot every session. The transmitter learns it from its
// next submit (ESME_RINVBNDSTS) and binds again; the receiver, which sends
// nothing the SMSC could refuse, is bound again with it, so the receipts
// come. Before, it stayed bound to nobody, counted up, and the receipts
// waited at the SMSC until its enquire_link failed, if ever.
func TestUpstreamReceiverRebinds(t *testing.T) {
	r, _ := twoWayRig(t, rigOpts{
		sim:      smpp.SimOptions{DLRDelay: 10 * time.Millisecond, NoTransceiver: true},
		upstream: func(u *gateway.UpstreamConfig) { u.Binds, u.Receivers = 1, 1 },
	})
	bob, err := r.bind("bob", "secret2", smpp.BindTransceiver)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "the transmitter and the receiver up", func() bool { return !r.gw.Health().Degraded() })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	first, err := bob.submit(ctx, submitSM("", "13712345678", "before"))
	if err != nil {
		t.Fatal(err)
	}
	bob.waitReceipts(t, 1, 10*time.Second)
	if lost := r.sim.LoseBinds(); lost != 2 {
		t.Fatalf("the SMSC forgot %d sessions, want the transmitter and the receiver", lost)
	}
	ids := []string{first}
	for i := range 5 {
		id, err := bob.submit(ctx, submitSM("", "13712345678", fmt.Sprintf("after %d", i)))
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	got := bob.waitReceipts(t, len(ids), 20*time.Second)
	for _, id := range ids {
		if got[id].State != smpp.StateDelivered {
			t.Errorf("receipt of %s: %+v", id, got[id])
		}
	}
	if now, _ := r.sim.BindsOfKind("up", smpp.BindReceiver); now != 1 {
		t.Errorf("%d receivers bound at the SMSC, want 1", now)
	}
}
