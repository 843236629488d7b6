package gateway_test

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/fiorix/go-smpp/smpp/pdu/pdutlv"

	"github.com/qxtd/qxtd/policy"
	"github.com/qxtd/qxtd/segment"
	"github.com/qxtd/qxtd/smpp"
)

// TestRelayedRepliesKeepOctets: replies that come in on node 1 for
// receivers bound on node 2 reach them as they came: a binary reply with
// its data_coding, UDH, octets and port TLVs (before, node 2 got its text
// alone and sent an empty text), whole in message_payload to bob, in
// parts to alice, whose long_replies is udh8 (node 2 frames them with its
// bind's setting).
func TestRelayedRepliesKeepOctets(t *testing.T) {
	b := newBoard()
	n1 := newRelayNode(t, b, 1)
	n2 := newRelayNode(t, b, 2)
	lr := "udh8"
	if _, err := n2.pol.UpdateUser(policy.OperatorActor("test"), "alice", policy.UserUpdate{LongReplies: &lr}); err != nil {
		t.Fatal(err)
	}
	alice := bindPartsESME(t, n2.rig, "alice", "secret1", nil)
	bob, err := n2.bind("bob", "secret2", smpp.BindReceiver)
	if err != nil {
		t.Fatal(err)
	}
	port := []byte{0x06, 0x05, 0x04, 0x23, 0xF4, 0x00, 0x00}
	binary := make([]byte, 300)
	for i := range binary {
		binary[i] = byte(255 - i)
	}
	text := strings.Repeat("长回复", 30) // 90 UCS-2 units: two parts
	eventually(t, 5*time.Second, "node 1 sees both receivers on node 2", func() bool {
		b.mu.Lock()
		defer b.mu.Unlock()
		return len(b.binds[2]) == 2
	})
	for _, to := range []string{"10657500112", "106575002"} {
		if err := n1.sim.InjectDeliverSM(smpp.SM{SourceAddr: "13712345678", DestinationAddr: to, ESMClass: 0x40, DataCoding: 0xF5,
			TLVs: []smpp.TLVField{{Tag: pdutlv.TagMessagePayload, Value: append(bytes.Clone(port), binary...)},
				{Tag: pdutlv.TagDestinationPort, Value: []byte{0x23, 0xF4}}}}); err != nil {
			t.Fatal(err)
		}
	}
	if err := n1.sim.InjectDeliverSM(smpp.SM{SourceAddr: "13712345678", DestinationAddr: "10657500112", DataCoding: 0x08,
		TLVs: []smpp.TLVField{{Tag: pdutlv.TagMessagePayload, Value: ucs2Of(text)}}}); err != nil {
		t.Fatal(err)
	}

	got := bob.waitMOs(t, 1)[0]
	want := append(bytes.Clone(port), binary...)
	if got.DataCoding != 0xF5 || got.ESMClass != 0x40 || !bytes.Equal(got.TLVs[segment.TagMessagePayload], want) ||
		!bytes.Equal(got.TLVs[uint16(pdutlv.TagDestinationPort)], []byte{0x23, 0xF4}) {
		t.Errorf("bob got data_coding 0x%02x esm_class 0x%02x payload % x ports % x; want the binary reply whole",
			got.DataCoding, got.ESMClass, got.TLVs[segment.TagMessagePayload], got.TLVs[uint16(pdutlv.TagDestinationPort)])
	}

	replies := assemble(t, alice.wait(t, 5))
	if len(replies) != 2 {
		t.Fatalf("alice assembled %d replies, want 2", len(replies))
	}
	var joined []byte
	for i, f := range replies[0].frags {
		if f.Coding != segment.Octets || !bytes.Equal(f.UDH, port) || !bytes.Equal(replies[0].ins[i].DestPort, []byte{0x23, 0xF4}) {
			t.Errorf("alice's binary part %d: coding %v UDH % x port TLV % x", i+1, f.Coding, f.UDH, replies[0].ins[i].DestPort)
		}
		joined = append(joined, f.Data...)
	}
	if !bytes.Equal(joined, binary) || len(replies[0].frags) != 3 {
		t.Errorf("alice's binary reply in %d parts, joined % x", len(replies[0].frags), joined)
	}
	if s := joinedText(t, replies[1]); s != text || len(replies[1].frags) != 2 {
		t.Errorf("alice's text in %d parts reads %q", len(replies[1].frags), s)
	}
	// Counted once node 2's answer is back at node 1, after the ESME's.
	eventually(t, 5*time.Second, "node 1 counted 3 replies relayed", func() bool { return relayed(t, n1.rig, "mo", "delivered") == 3 })
}
