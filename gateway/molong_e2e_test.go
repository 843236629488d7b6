package gateway_test

import (
	"bytes"
	"context"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fiorix/go-smpp/smpp/pdu"
	"github.com/fiorix/go-smpp/smpp/pdu/pdufield"
	"github.com/fiorix/go-smpp/smpp/pdu/pdutlv"

	"github.com/qxtd/qxtd/policy"
	"github.com/qxtd/qxtd/segment"
	"github.com/qxtd/qxtd/smpp"
)

// partsESME is a receiver that records every deliver_sm it is sent,
// reading only short_message and the TLVs, as a client library that
// leaves message_payload to the application does, in the order they came
// on the wire (by sequence number: its handlers run side by side), and
// answers ESME_RSYSERR to the first one refuse picks (nil: none).
type partsESME struct {
	mu      sync.Mutex
	got     map[uint32]segment.Incoming
	refuse  func(segment.Incoming) bool
	refused bool
	wake    chan struct{}
}

func bindPartsESME(t *testing.T, r *rig, systemID, password string, refuse func(segment.Incoming) bool) *partsESME {
	t.Helper()
	e := &partsESME{got: map[uint32]segment.Incoming{}, refuse: refuse, wake: make(chan struct{}, 1)}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	r.dialAs(ctx, t, systemID, password, smpp.BindReceiver, 10, smpp.HandlerFunc(func(_ context.Context, _ *smpp.Conn, p pdu.Body) pdu.Body {
		if p.Header().ID != pdu.DeliverSMID {
			return smpp.ErrorResponse(p, smpp.StatusInvalidCommandID)
		}
		in := segment.Incoming{DataCoding: smpp.Byte(p, pdufield.DataCoding), ESMClass: smpp.Byte(p, pdufield.ESMClass),
			ShortMessage: smpp.UserData(p), Payload: smpp.TLV(p, pdutlv.TagMessagePayload),
			SARRef: smpp.TLV(p, pdutlv.TagSarMsgRefNum), SARTotal: smpp.TLV(p, pdutlv.TagSarTotalSegments), SARSeq: smpp.TLV(p, pdutlv.TagSarSegmentSeqnum),
			DestPort: smpp.TLV(p, pdutlv.TagDestinationPort), KeepOctets: true}
		e.mu.Lock()
		defer e.mu.Unlock()
		if e.refuse != nil && !e.refused && e.refuse(in) {
			e.refused = true
			return smpp.ErrorResponse(p, 0x08) // ESME_RSYSERR: to be sent again
		}
		e.got[p.Header().Seq] = in
		select {
		case e.wake <- struct{}{}:
		default:
		}
		return pdu.NewDeliverSMResp()
	}))
	return e
}

// wait waits until n deliver_sm were taken; they are returned in the
// order they came.
func (e *partsESME) wait(t *testing.T, n int) []segment.Incoming {
	t.Helper()
	deadline := time.NewTimer(10 * time.Second)
	defer deadline.Stop()
	for {
		e.mu.Lock()
		var got []segment.Incoming
		for _, seq := range slices.Sorted(maps.Keys(e.got)) {
			got = append(got, e.got[seq])
		}
		e.mu.Unlock()
		if len(got) >= n {
			return got
		}
		select {
		case <-e.wake:
		case <-deadline.C:
			t.Fatalf("the ESME took %d deliver_sm, want %d", len(got), n)
		}
	}
}

// longReply is one reply as an ESME reading short_message assembles it:
// its parts, the deliver_sm that carried them, and how many parts came
// again (after a refusal).
type longReply struct {
	frags []segment.Fragment
	ins   []segment.Incoming
	ref   uint16
	again int
}

// assemble reads the parts as they came: a part without a concatenation
// is a reply of its own, the others are gathered by reference, in the
// order each reference first came. A part that comes again (after a
// refusal) must be the part it was.
func assemble(t *testing.T, got []segment.Incoming) []longReply {
	t.Helper()
	var out []longReply
	byRef := map[uint16]int{}
	for i, in := range got {
		if len(in.Payload) > 0 {
			t.Fatalf("deliver_sm %d: message_payload of %d octets, for an ESME that takes long replies in parts", i+1, len(in.Payload))
		}
		f, err := segment.ParseIncoming(in, false)
		if err != nil {
			t.Fatalf("deliver_sm %d: %v", i+1, err)
		}
		if f.Info == nil || !f.Info.Concat {
			out = append(out, longReply{frags: []segment.Fragment{f}, ins: []segment.Incoming{in}})
			continue
		}
		k, ok := byRef[f.Info.Ref]
		if !ok {
			k = len(out)
			byRef[f.Info.Ref] = k
			out = append(out, longReply{ref: f.Info.Ref})
		}
		lr := &out[k]
		switch seq := int(f.Info.Seq); {
		case seq <= len(lr.frags):
			if first := lr.ins[seq-1]; !bytes.Equal(first.ShortMessage, in.ShortMessage) || !bytes.Equal(first.SARSeq, in.SARSeq) {
				t.Fatalf("deliver_sm %d: part %d again as % x, first % x", i+1, seq, in.ShortMessage, first.ShortMessage)
			}
			lr.again++
		case seq == len(lr.frags)+1:
			lr.frags, lr.ins = append(lr.frags, f), append(lr.ins, in)
		default:
			t.Fatalf("deliver_sm %d: part %d after %d", i+1, seq, len(lr.frags))
		}
	}
	return out
}

// TestLongRepliesInParts: a user whose long_replies is udh8 or sar gets
// a reply too long for one SMS in parts, as a carrier SMSC delivers it,
// in short_message only: a text and a binary reply with its application
// port in every part (the UDH IE and the port TLV), joined by a UDH or
// by the SAR TLVs. A part the ESME refuses is sent again with the parts
// before it, under the same reference, and the reply is acknowledged
// once. Before, every long reply went in message_payload, which such an
// ESME takes as an empty message.
func TestLongRepliesInParts(t *testing.T) {
	r, pol := twoWayRig(t, rigOpts{})
	op := policy.OperatorActor("test")
	for sid, lr := range map[string]string{"alice": "udh8", "bob": "sar"} {
		if _, err := pol.UpdateUser(op, sid, policy.UserUpdate{LongReplies: &lr}); err != nil {
			t.Fatal(err)
		}
	}
	// alice refuses the GSM text's second part once.
	alice := bindPartsESME(t, r, "alice", "secret1", func(in segment.Incoming) bool {
		return in.DataCoding == 0x00 && len(in.ShortMessage) > 6 && in.ShortMessage[5] == 2
	})
	bob := bindPartsESME(t, r, "bob", "secret2", nil)
	waitReady(t, r)

	text := strings.Repeat("Hello {world} ", 15) // 210 septets (the braces escaped): two parts
	port := []byte{0x06, 0x05, 0x04, 0x23, 0xF4, 0x00, 0x00}
	binary := make([]byte, 300)
	for i := range binary {
		binary[i] = byte(i)
	}
	short := "好的"
	chinese := strings.Repeat("收到，谢谢。", 20) // 120 UCS-2 units: two parts
	for _, sm := range []smpp.SM{
		{SourceAddr: "13712345678", DestinationAddr: "10657500112", DataCoding: 0x00,
			TLVs: []smpp.TLVField{{Tag: pdutlv.TagMessagePayload, Value: gsmOf(t, text)}}},
		{SourceAddr: "13712345678", DestinationAddr: "10657500112", ESMClass: 0x40, DataCoding: 0xF5,
			TLVs: []smpp.TLVField{{Tag: pdutlv.TagMessagePayload, Value: append(bytes.Clone(port), binary...)},
				{Tag: pdutlv.TagDestinationPort, Value: []byte{0x23, 0xF4}}}},
		{SourceAddr: "13712345678", DestinationAddr: "10657500112", DataCoding: 0x08, ShortMessage: ucs2Of(short)},
		{SourceAddr: "13923412345", DestinationAddr: "106575002", DataCoding: 0x08,
			TLVs: []smpp.TLVField{{Tag: pdutlv.TagMessagePayload, Value: ucs2Of(chinese)}}},
	} {
		if err := r.sim.InjectDeliverSM(sm); err != nil {
			t.Fatal(err)
		}
	}

	// alice: the text's two parts (the second refused once, so the first
	// again), the binary reply's three, the short one.
	got := alice.wait(t, 7)
	replies := assemble(t, got)
	if len(replies) != 3 {
		t.Fatalf("alice assembled %d replies, want 3", len(replies))
	}
	if s := joinedText(t, replies[0]); s != text || len(replies[0].frags) != 2 || replies[0].frags[0].Info.Ref16 {
		t.Errorf("the text: %d parts (16-bit ref: %v) reading %q", len(replies[0].frags), replies[0].frags[0].Info.Ref16, s)
	}
	if replies[0].again != 1 {
		t.Errorf("the text's parts came again %d times, want 1 (the first, before the refused second)", replies[0].again)
	}
	bin := replies[1]
	if len(bin.frags) != 3 {
		t.Fatalf("the binary reply in %d parts, want 3", len(bin.frags))
	}
	var joined []byte
	for i, f := range bin.frags {
		if f.Coding != segment.Octets || !f.Info.Ports || f.Info.DestPort != 9204 || !bytes.Equal(f.UDH, port) {
			t.Errorf("binary part %d: %+v, UDH % x; want its port 9204 in the UDH", i+1, f.Info, f.UDH)
		}
		joined = append(joined, f.Data...)
	}
	if !bytes.Equal(joined, binary) {
		t.Errorf("the binary reply joined % x, want % x", joined, binary)
	}
	for i, in := range bin.ins {
		if !bytes.Equal(in.DestPort, []byte{0x23, 0xF4}) || in.DataCoding != 0xF5 {
			t.Errorf("binary part %d: destination_port % x, data_coding 0x%02x", i+1, in.DestPort, in.DataCoding)
		}
	}
	if s := joinedText(t, replies[2]); s != short || replies[2].ins[0].ESMClass != 0 {
		t.Errorf("a short reply: %q, esm_class 0x%02x; want it whole, without a header", s, replies[2].ins[0].ESMClass)
	}

	// bob: SAR, the parts without a UDH.
	bobs := bob.wait(t, 2)
	br := assemble(t, bobs)
	if len(br) != 1 || len(br[0].frags) != 2 {
		t.Fatalf("bob assembled %d replies", len(br))
	}
	for i, in := range bobs {
		if in.ESMClass != 0 || len(in.SARRef) != 2 || len(in.ShortMessage) > 140-6 {
			t.Errorf("bob's part %d: esm_class 0x%02x, sar_msg_ref_num % x, %d octets", i+1, in.ESMClass, in.SARRef, len(in.ShortMessage))
		}
	}
	if s := joinedText(t, br[0]); s != chinese {
		t.Errorf("bob's reply reads %q", s)
	}

	// One acknowledgement a reply, not a part; none left pending.
	waitFor(t, 10*time.Second, "4 replies acknowledged", func() bool { return counters(t, r)["qxtd_mo_forwarded_total,outcome=ok"] == 4 })
	if n := counters(t, r)["qxtd_mo_forwarded_total,outcome=error"]; n != 1 {
		t.Errorf("forwards failed: %v, want 1 (the refused part)", n)
	}
}

// TestLongRepliesFormChanged: the operator changes a bound user's
// long_replies, and the next reply goes in the new form without the ESME
// binding again: whole in message_payload, then in parts with a UDH, then
// whole again. Before, a bind kept the form its user had when it bound,
// so an ESME bound for weeks went on getting replies it could not read
// until it was restarted.
func TestLongRepliesFormChanged(t *testing.T) {
	r, pol := twoWayRig(t, rigOpts{})
	alice := bindPartsESME(t, r, "alice", "secret1", nil)
	waitReady(t, r)
	text := strings.Repeat("Hello {world} ", 15) // 210 septets: two parts
	inject := func() {
		t.Helper()
		if err := r.sim.InjectDeliverSM(smpp.SM{SourceAddr: "13712345678", DestinationAddr: "10657500112", DataCoding: 0x00,
			TLVs: []smpp.TLVField{{Tag: pdutlv.TagMessagePayload, Value: gsmOf(t, text)}}}); err != nil {
			t.Fatal(err)
		}
	}
	setForm := func(form string) {
		t.Helper()
		if _, err := pol.UpdateUser(policy.OperatorActor("test"), "alice", policy.UserUpdate{LongReplies: &form}); err != nil {
			t.Fatal(err)
		}
	}
	// Whole: all 240 octets in one deliver_sm (in short_message, which
	// holds up to 254), with no UDH and no SAR TLVs.
	whole := func(in segment.Incoming, when string) {
		t.Helper()
		if got, want := append(bytes.Clone(in.ShortMessage), in.Payload...), gsmOf(t, text); !bytes.Equal(got, want) || in.ESMClass&0x40 != 0 || in.SARRef != nil {
			t.Errorf("%s: %d octets (want %d), esm_class 0x%02x, sar_msg_ref_num % x; want the reply whole",
				when, len(got), len(want), in.ESMClass, in.SARRef)
		}
	}

	inject() // alice binds with the default: whole
	whole(alice.wait(t, 1)[0], "before the change")

	setForm("udh8")
	inject()
	got := alice.wait(t, 3)
	replies := assemble(t, got[1:])
	if len(replies) != 1 || len(replies[0].frags) != 2 || replies[0].frags[0].Info.Ref16 {
		t.Fatalf("after the change to udh8: %d replies, want one in 2 parts with an 8-bit reference", len(replies))
	}
	if s := joinedText(t, replies[0]); s != text {
		t.Errorf("after the change to udh8 the parts read %q", s)
	}

	setForm("payload")
	inject()
	whole(alice.wait(t, 4)[3], "after the change back")
}

func joinedText(t *testing.T, lr longReply) string {
	t.Helper()
	frags := make([]*segment.Fragment, len(lr.frags))
	for i := range lr.frags {
		frags[i] = &lr.frags[i]
	}
	s, err := segment.JoinText(frags)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func gsmOf(t *testing.T, s string) []byte {
	t.Helper()
	dc, b := segment.TextBody(s)
	if dc != 0x00 {
		t.Fatalf("%q is not GSM", s)
	}
	return b
}

func ucs2Of(s string) []byte {
	_, b := segment.TextBody(s)
	return b
}
