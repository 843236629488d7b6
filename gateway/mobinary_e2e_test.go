package gateway_test

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"slices"
	"testing"
	"time"

	"github.com/fiorix/go-smpp/smpp/pdu/pdutlv"

	"github.com/qxtd/qxtd/segment"
	"github.com/qxtd/qxtd/smpp"
	"github.com/qxtd/qxtd/webhook"
)

// TestBinaryReplies: replies that are not text reach the enterprise as
// the handset sent them: at its receiver (the SMSC's data_coding, the UDH
// with its application ports, the port TLVs, the octets; a text to an
// application port too; a long one's parts joined, in
// message_payload past 254 octets), at its reply_url (hex) and in its
// inbox. Before, each was stored and forwarded as an empty text, and a
// binary long reply's parts as empty replies of their own; a deliver_sm
// from the SMSC with its UDH in message_payload was refused.
func TestBinaryReplies(t *testing.T) {
	r, pol := twoWayRig(t, rigOpts{})
	posts := replyReceiver(t, r, pol, "whsec_binary")
	alice, err := r.bind("alice", "secret1", smpp.BindReceiver)
	if err != nil {
		t.Fatal(err)
	}
	waitReady(t, r)
	const to = "10657500112" // alice's extension
	octets := func(n int, from byte) []byte {
		b := make([]byte, n)
		for i := range b {
			b[i] = from + byte(i)
		}
		return b
	}
	ports := []byte{0x05, 0x04, 0x23, 0xF4, 0x23, 0xF0} // 16-bit ports: to 9204 from 9200
	wapPush := []byte{0x05, 0x04, 0x0B, 0x84, 0x23, 0xF0}
	header := func(ies ...[]byte) []byte {
		h := []byte{0}
		for _, ie := range ies {
			h = append(h, ie...)
		}
		h[0] = byte(len(h) - 1)
		return h
	}
	type want struct {
		dc         uint8
		udh, data  []byte
		inPayload  bool
		portTLVs   []byte // source_port then destination_port, as the SMSC sent them
		src, dst   int    // the ports the webhook gives; -1: none
		lookLikeMO string // what the case is
	}
	first, second := octets(128, 0x80), octets(128, 0x00)
	wants := []want{
		{dc: 0xF5, udh: header(ports), data: []byte{0x00, 0x01, 0xFF, 0x80}, src: 9200, dst: 9204, lookLikeMO: "class 1 8-bit data to a port"},
		{dc: 0x04, udh: header(wapPush), data: append(slices.Clone(first), second...), inPayload: true, src: 9200, dst: 2948, lookLikeMO: "a WAP push in two parts, joined"},
		{dc: 0x00, data: []byte{'h', 'i', 0x80}, src: -1, dst: -1, lookLikeMO: "octets GSM 7-bit has no use for"},
		{dc: 0x06, data: []byte{0xCF, 0xF0, 0xE8}, src: -1, dst: -1, lookLikeMO: "Cyrillic (a coding qxtd does not read)"},
		{dc: 0xF6, udh: header(ports), data: []byte{0x7F, 0x00}, src: 9200, dst: 9204, lookLikeMO: "the SMSC's UDH in message_payload (go-smpp refused it)"},
		{dc: 0x00, udh: header(ports), data: []byte("BEGIN:VCARD"), src: 9200, dst: 9204, lookLikeMO: "a text to a port other than WAP's (a vCard)"},
		{dc: 0xF5, data: []byte{0x02, 0x4A}, portTLVs: []byte{0x00, 0x00, 0x15, 0x81}, src: 0, dst: 5505, lookLikeMO: "8-bit data with the port TLVs"},
	}
	injectParts(t, r, "13712345678", to, replyPart{coding: 0xF5, udh: header(ports), data: wants[0].data})
	injectParts(t, r, "13712345678", to,
		replyPart{coding: 0x04, udh: header([]byte{0x00, 0x03, 0x5A, 2, 2}, wapPush), data: second},
		replyPart{coding: 0x04, udh: header(wapPush, []byte{0x00, 0x03, 0x5A, 2, 1}), data: first})
	for _, w := range wants[2:4] {
		if err := r.sim.InjectDeliverSM(smpp.SM{SourceAddr: "13712345678", DestinationAddr: to, DataCoding: w.dc, ShortMessage: w.data}); err != nil {
			t.Fatal(err)
		}
	}

	if err := r.sim.InjectDeliverSM(smpp.SM{SourceAddr: "13712345678", DestinationAddr: to, ESMClass: 0x40, DataCoding: 0xF6,
		TLVs: []smpp.TLVField{{Tag: pdutlv.TagMessagePayload, Value: append(header(ports), wants[4].data...)}}}); err != nil {
		t.Fatal(err)
	}
	injectParts(t, r, "13712345678", to, replyPart{coding: 0x00, udh: header(ports), data: wants[5].data})
	if err := r.sim.InjectDeliverSM(smpp.SM{SourceAddr: "13712345678", DestinationAddr: to, DataCoding: 0xF5, ShortMessage: wants[6].data,
		TLVs: []smpp.TLVField{{Tag: pdutlv.TagSourcePort, Value: wants[6].portTLVs[:2]}, {Tag: pdutlv.TagDestinationPort, Value: wants[6].portTLVs[2:]}}}); err != nil {
		t.Fatal(err)
	}
	got := alice.waitMOs(t, len(wants))
	if len(got) != len(wants) {
		t.Fatalf("alice got %d replies, want %d", len(got), len(wants))
	}
	for i, w := range wants {
		m := got[i]
		body := append(slices.Clone(w.udh), w.data...)
		sm, payload := m.ShortMessage, m.TLVs[segment.TagMessagePayload]
		if w.inPayload {
			sm, payload = payload, m.ShortMessage
		}
		esm := uint8(0)
		if w.udh != nil {
			esm = 0x40
		}
		if m.DataCoding != w.dc || m.ESMClass != esm || !bytes.Equal(sm, body) || len(payload) != 0 {
			t.Errorf("%s: alice got data_coding 0x%02x esm_class 0x%02x short_message % x payload % x; want 0x%02x, 0x%02x, % x (in message_payload: %v)",
				w.lookLikeMO, m.DataCoding, m.ESMClass, m.ShortMessage, m.TLVs[segment.TagMessagePayload], w.dc, esm, body, w.inPayload)
		}
		if tlvs := append(slices.Clone(m.TLVs[uint16(pdutlv.TagSourcePort)]), m.TLVs[uint16(pdutlv.TagDestinationPort)]...); !bytes.Equal(tlvs, w.portTLVs) {
			t.Errorf("%s: alice got port TLVs % x, want % x", w.lookLikeMO, tlvs, w.portTLVs)
		}
	}

	inbox := inboxOf(t, r.store, "E1")
	slices.Reverse(inbox) // oldest first
	for i, w := range wants {
		m := inbox[i]
		if m.Text != "" || m.DataCoding != w.dc || !bytes.Equal(m.UDH, w.udh) || !bytes.Equal(m.Binary, w.data) || m.PartsMissing != 0 ||
			(m.DestPort != nil) != (w.portTLVs != nil) {
			t.Errorf("%s: inbox has %+v", w.lookLikeMO, m)
		}
	}

	posted := map[string]webhook.Reply{}
	for range wants {
		select {
		case p := <-posts:
			var rp webhook.Reply
			if err := json.Unmarshal(p.body, &rp); err != nil {
				t.Fatal(err)
			}
			posted[rp.Binary] = rp
		case <-time.After(10 * time.Second):
			t.Fatalf("POSTed %d replies, want %d", len(posted), len(wants))
		}
	}
	for _, w := range wants {
		rp, ok := posted[hex.EncodeToString(w.data)]
		if !ok || rp.Text != "" || rp.DataCoding == nil || *rp.DataCoding != int(w.dc) || rp.UDH != hex.EncodeToString(w.udh) || rp.Octets() != len(w.data) {
			t.Errorf("%s: POSTed %+v (found: %v)", w.lookLikeMO, rp, ok)
		}
		port := func(p *int) int {
			if p == nil {
				return -1
			}
			return *p
		}
		if src, dst := port(rp.SourcePort), port(rp.DestinationPort); src != w.src || dst != w.dst {
			t.Errorf("%s: POSTed ports %d → %d, want %d → %d", w.lookLikeMO, src, dst, w.src, w.dst)
		}
	}
	for key, want := range map[string]float64{
		"qxtd_mo_received_total,result=matched": 7,
		"qxtd_mo_joined_total,how=complete":     1,
		"qxtd_mo_parts_total,outcome=stored":    2,
	} {
		if got := counters(t, r)[key]; got != want {
			t.Errorf("%s = %v, want %v", key, got, want)
		}
	}
}
