package smpp_test

import (
	"bytes"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/fiorix/go-smpp/smpp/pdu"
	"github.com/fiorix/go-smpp/smpp/pdu/pdufield"

	"github.com/qxtd/qxtd/smpp"
)

// bindBody is a bind_* body by hand (§4.1.1).
func bindBody(systemID, password, systemType, addressRange string) []byte {
	return bytes.Join([][]byte{cs(systemID), cs(password), cs(systemType), {0x34, 1, 1}, cs(addressRange)}, nil)
}

// TestServerBindFieldLimits: a bind whose system_id or password is longer
// than SMPP 3.4 §4.1.1 gives it (16 and 9 octets with the NUL) is refused
// before the backend with the status §5.1.3 names (ESME_RINVSYSID,
// ESME_RINVPASWD), in its bind_*_resp with our system_id and its sequence
// number; one octet less goes to the backend. system_type and
// address_range, which qxtd does not read, bind whatever their length (a
// client that sends them too long binds as before). A field without its
// NUL gets generic_nack ESME_RINVCMDLEN. After each refusal a good bind on
// the same connection is bound. Before, the backend had every bind: one
// that knows such an account bound it (and qxtd's, which has none,
// answered ESME_RBINDFAIL).
func TestServerBindFieldLimits(t *testing.T) {
	long := func(n int) string { return strings.Repeat("x", n) }
	for _, tc := range []struct {
		name    string
		body    []byte
		resp    pdu.ID // generic_nack or the bind's response
		want    pdu.Status
		backend bool   // the backend saw the bind
		pass    string // ent1's password at the backend, if not "secret"
	}{
		{"system_id 16", bindBody(long(16), "secret", "", ""), pdu.BindTransceiverRespID, smpp.StatusInvalidSystemID, false, ""},
		{"system_id 15", bindBody(long(15), "secret", "", ""), pdu.BindTransceiverRespID, smpp.StatusOK, true, ""},
		{"password 9", bindBody("ent1", long(9), "", ""), pdu.BindTransceiverRespID, smpp.StatusInvalidPassword, false, long(9)},
		{"password 8", bindBody("ent1", long(8), "", ""), pdu.BindTransceiverRespID, smpp.StatusOK, true, long(8)},
		{"system_type 13, not read", bindBody("ent1", "secret", long(13), ""), pdu.BindTransceiverRespID, smpp.StatusOK, true, ""},
		{"address_range 41, not read", bindBody("ent1", "secret", "", long(41)), pdu.BindTransceiverRespID, smpp.StatusOK, true, ""},
		{"system_id without NUL", []byte(long(40)), pdu.GenericNACKID, smpp.StatusInvalidCommandLen, false, ""},
		{"address_range without NUL", bytes.TrimSuffix(bindBody("ent1", "secret", "", "10086"), []byte{0}), pdu.GenericNACKID, smpp.StatusInvalidCommandLen, false, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := newRecBackend()
			// Accounts with the longest fields SMPP allows, and with
			// longer ones, which a backend may well know: the server
			// refuses the latter before asking it.
			b.users[long(15)], b.users[long(16)] = "secret", "secret"
			_, addr := startServer(t, b, smpp.ServerOptions{})
			p := dialPeer(t, addr)
			if tc.pass != "" {
				b.users["ent1"] = tc.pass
			}
			p.send(frame(pdu.BindTransceiverID, 0, 7, tc.body))
			f := p.expect(tc.resp, tc.want, 7)
			if tc.resp == pdu.BindTransceiverRespID {
				r, err := smpp.Decode(f)
				if err != nil {
					t.Fatal(err)
				}
				if got := smpp.Str(r, pdufield.SystemID); got != "qxtd-test" {
					t.Errorf("bind_transceiver_resp system_id %q, want ours", got)
				}
			}
			if got := len(b.binds.all()); got > 0 != tc.backend {
				t.Errorf("the backend saw %d binds, want %v", got, tc.backend)
			}
			if tc.want == smpp.StatusOK {
				p.send(frame(pdu.EnquireLinkID, 0, 8))
				p.expect(pdu.EnquireLinkRespID, 0, 8)
				return
			}
			// The connection is still there for a good bind.
			b.users["ent1"] = "secret"
			p.bind(pdu.BindTransceiverID, "ent1", "secret", 8, smpp.StatusOK)
			p.send(frame(pdu.SubmitSMID, 0, 9, submitSMBody("10086", "13712345678", "hi", 0)))
			p.expect(pdu.SubmitSMRespID, 0, 9)
		})
	}
}

// TestCheckRequest holds checkRequest to the sizes of SMPP 3.4 §4 for
// every request an ESME sends (the gateway's TestWireFieldLimits has them
// over the wire): the largest field allowed passes, one octet more is
// refused with its status, the first field too long in wire order
// decides, and a short_message of 255 octets is ESME_RINVMSGLEN.
func TestCheckRequest(t *testing.T) {
	long := func(n int) string { return strings.Repeat("1", n) }
	sm := func(src, dst string, n int) []byte {
		return bytes.Join([][]byte{cs(""), {1, 1}, cs(src), {1, 1}, cs(dst), {0, 0, 0}, cs(""), cs(""), {0, 0, 0, 0}, {byte(n)}, bytes.Repeat([]byte("a"), n)}, nil)
	}
	// multi is a submit_multi's body to n SME addresses.
	multi := func(n int) []byte {
		b := bytes.Join([][]byte{cs(""), {1, 1}, cs("10690001"), {byte(n)}}, nil)
		for i := range n {
			b = append(append(b, 1, 1, 1), cs(fmt.Sprintf("1371234%04d", i))...)
		}
		return append(b, bytes.Join([][]byte{{0, 0, 0}, cs(""), cs(""), {0, 0, 0, 0}, {2}, []byte("hi")}, nil)...)
	}
	for _, tc := range []struct {
		name  string
		frame []byte
		field string
		want  pdu.Status
	}{
		{"submit_sm at the limits", frame(pdu.SubmitSMID, 0, 1, sm(long(20), long(20), 254)), "", smpp.StatusOK},
		{"submit_sm source first", frame(pdu.SubmitSMID, 0, 1, sm(long(21), long(21), 255)), "source_addr", smpp.StatusInvalidSrcAddr},
		{"submit_sm destination", frame(pdu.SubmitSMID, 0, 1, sm(long(20), long(21), 255)), "destination_addr", smpp.StatusInvalidDstAddr},
		{"submit_sm short_message 255", frame(pdu.SubmitSMID, 0, 1, sm("1", "2", 255)), "short_message", smpp.StatusInvalidMsgLen},
		{"deliver_sm is not held", frame(pdu.DeliverSMID, 0, 1, sm(long(30), long(30), 255)), "", smpp.StatusOK},
		{"data_sm addresses of 64", frame(smpp.DataSMID, 0, 1, cs(long(5)), []byte{1, 1}, cs(long(64)), []byte{1, 1}, cs(long(64)), []byte{0, 0, 0}), "", smpp.StatusOK},
		{"data_sm service_type 6", frame(smpp.DataSMID, 0, 1, cs(long(6)), []byte{1, 1}, cs("1"), []byte{1, 1}, cs("2"), []byte{0, 0, 0}), "service_type", smpp.StatusInvalidServiceType},
		{"query_sm message_id 65", frame(pdu.QuerySMID, 0, 1, cs(long(65)), []byte{1, 1}, cs("")), "message_id", smpp.StatusInvalidMsgID},
		{"cancel_sm destination 21", frame(smpp.CancelSMID, 0, 1, cs(""), cs("1"), []byte{1, 1}, cs(""), []byte{1, 1}, cs(long(21))), "destination_addr", smpp.StatusInvalidDstAddr},
		{"replace_sm validity 17", frame(smpp.ReplaceSMID, 0, 1, cs("1"), []byte{1, 1}, cs(""), cs(""), cs(long(17)), []byte{0, 0, 0}), "validity_period", smpp.StatusInvalidExpiry},
		{"bind system_type 13 is not held", frame(pdu.BindReceiverID, 0, 1, bindBody("a", "b", long(13), "")), "", smpp.StatusOK},
		{"bind password 9", frame(pdu.BindReceiverID, 0, 1, bindBody("a", long(9), "", "")), "password", smpp.StatusInvalidPassword},
		{"submit_multi of 254", frame(pdu.SubmitMultiID, 0, 1, multi(254)), "", smpp.StatusOK},
		{"submit_multi of 255", frame(pdu.SubmitMultiID, 0, 1, multi(255)), "number_of_dests", smpp.StatusInvalidNumDests},
		{"submit_multi of none", frame(pdu.SubmitMultiID, 0, 1, multi(0)), "number_of_dests", smpp.StatusInvalidNumDests},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := smpp.Decode(tc.frame)
			if err != nil {
				t.Fatal(err)
			}
			field, st, ok := smpp.CheckRequest(p)
			if ok != (tc.want == smpp.StatusOK) || field != tc.field || st != tc.want {
				t.Fatalf("CheckRequest = %q %#x %v, want %q %#x", field, uint32(st), ok, tc.field, uint32(tc.want))
			}
		})
	}
	// A submit_sm, the hot path, is checked from its frame.
	p, err := smpp.Decode(frame(pdu.SubmitSMID, 0, 1, sm("10690000", "13712345678", 70)))
	if err != nil {
		t.Fatal(err)
	}
	if n := testing.AllocsPerRun(100, func() { _, _, _ = smpp.CheckRequest(p) }); n != 0 {
		t.Errorf("checking a submit_sm: %v allocations, want 0", n)
	}
}

// FuzzCheckRequest: whatever Decode accepts, the check never panics and
// agrees with the sizes read the slow way (Str, in wire order): ok when
// every C-Octet String is shorter than its size, a submit_multi has 1–254
// destinations and short_message is at most 254 octets, else the first
// field out of bounds and its status.
func FuzzCheckRequest(f *testing.F) {
	for _, s := range seedFrames(f) {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := smpp.Decode(b)
		if err != nil {
			return
		}
		field, st, ok := smpp.CheckRequest(p)
		wantField, wantSt := "", smpp.StatusOK
		for _, l := range smpp.RequestLimits(p.Header().ID) {
			if len(smpp.Str(p, pdufield.Name(l.Name))) >= l.Size {
				wantField, wantSt = l.Name, l.Status
				break
			}
		}
		if n := len(smpp.Dests(p)); p.Header().ID == pdu.SubmitMultiID && wantSt == smpp.StatusOK && (n == 0 || n > smpp.MaxDests) {
			wantField, wantSt = "number_of_dests", smpp.StatusInvalidNumDests
		}
		switch p.Header().ID {
		case pdu.SubmitSMID, pdu.SubmitMultiID, smpp.ReplaceSMID:
			if wantSt == smpp.StatusOK && len(smpp.Bytes(p, pdufield.ShortMessage)) > smpp.MaxShortMessage {
				wantField, wantSt = "short_message", smpp.StatusInvalidMsgLen
			}
		}
		if field != wantField || st != wantSt || ok != (wantSt == smpp.StatusOK) {
			t.Fatalf("CheckRequest(% x) = %q %#x %v, want %q %#x", b, field, uint32(st), ok, wantField, uint32(wantSt))
		}
	})
}

// TestServerReportsRefusedFields: every request refused for a field out of
// its bounds, a bind's included, is reported to OnFieldRefused with its
// command and field (cmd/qxtd counts them in
// qxtd_smpp_fields_refused_total), and only those; each pair reported is
// one RefusedFields lists, so the daemon's series exist from the start.
func TestServerReportsRefusedFields(t *testing.T) {
	var mu sync.Mutex
	var got []smpp.RefusedField
	b := newRecBackend()
	_, addr := startServer(t, b, smpp.ServerOptions{OnFieldRefused: func(command, field string) {
		mu.Lock()
		got = append(got, smpp.RefusedField{Command: command, Field: field})
		mu.Unlock()
	}})
	p := dialPeer(t, addr)
	p.send(frame(pdu.BindTransceiverID, 0, 1, bindBody(strings.Repeat("x", 16), "secret", "", "")))
	p.expect(pdu.BindTransceiverRespID, smpp.StatusInvalidSystemID, 1)
	p.bind(pdu.BindTransceiverID, "ent1", "secret", 2, smpp.StatusOK)
	p.send(frame(pdu.SubmitSMID, 0, 3, submitSMBody("10086", strings.Repeat("1", 21), "hi", 0)))
	p.expect(pdu.SubmitSMRespID, smpp.StatusInvalidDstAddr, 3)
	p.send(frame(pdu.SubmitSMID, 0, 4, submitSMBody("10086", "13712345678", "hi", 0)))
	p.expect(pdu.SubmitSMRespID, smpp.StatusOK, 4)
	mu.Lock()
	defer mu.Unlock()
	want := []smpp.RefusedField{{"BindTransceiver", "system_id"}, {"SubmitSM", "destination_addr"}}
	if !slices.Equal(got, want) {
		t.Errorf("reported %v, want %v", got, want)
	}
	all := smpp.RefusedFields()
	for _, r := range want {
		if !slices.Contains(all, r) {
			t.Errorf("%v is not in RefusedFields", r)
		}
	}
}
