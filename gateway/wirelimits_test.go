package gateway_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/fiorix/go-smpp/smpp/pdu"
	"go.etcd.io/bbolt"

	"github.com/qxtd/qxtd/gateway"
	"github.com/qxtd/qxtd/policy"
	"github.com/qxtd/qxtd/smpp"
)

// rawESME is an ESME that writes PDUs byte by byte and reads each answer
// whole: what a malformed request gets, and that the session goes on.
type rawESME struct {
	t  *testing.T
	nc net.Conn
	r  *bufio.Reader
}

// dialRawESME binds a transceiver as systemID by hand.
func dialRawESME(t *testing.T, addr, systemID, password string) *rawESME {
	t.Helper()
	nc, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = nc.Close() })
	e := &rawESME{t: t, nc: nc, r: bufio.NewReader(nc)}
	e.send(pdu.BindTransceiverID, 1, wcs(systemID), wcs(password), wcs(""), []byte{0x34, 0, 0}, wcs(""))
	e.expect(pdu.BindTransceiverRespID, smpp.StatusOK, 1)
	return e
}

// wcs is a C-Octet String.
func wcs(s string) []byte { return append([]byte(s), 0) }

func (e *rawESME) send(id pdu.ID, seq uint32, body ...[]byte) {
	e.t.Helper()
	b := bytes.Join(body, nil)
	f := make([]byte, 16, 16+len(b))
	binary.BigEndian.PutUint32(f[0:4], uint32(16+len(b)))
	binary.BigEndian.PutUint32(f[4:8], uint32(id))
	binary.BigEndian.PutUint32(f[12:16], seq)
	if _, err := e.nc.Write(append(f, b...)); err != nil {
		e.t.Fatalf("write %s: %v", id, err)
	}
}

// next reads the next frame that is not a deliver_sm (a receipt, which
// it answers).
func (e *rawESME) next() (pdu.Header, []byte) {
	e.t.Helper()
	for {
		_ = e.nc.SetReadDeadline(time.Now().Add(15 * time.Second))
		f, err := smpp.ReadFrame(e.r)
		if err != nil {
			e.t.Fatalf("read: %v", err)
		}
		h := pdu.Header{
			Len: binary.BigEndian.Uint32(f[0:4]), ID: pdu.ID(binary.BigEndian.Uint32(f[4:8])),
			Status: pdu.Status(binary.BigEndian.Uint32(f[8:12])), Seq: binary.BigEndian.Uint32(f[12:16]),
		}
		if h.ID != pdu.DeliverSMID {
			return h, f
		}
		e.send(pdu.DeliverSMRespID, h.Seq, wcs(""))
	}
}

// expect reads the next answer and checks its header.
func (e *rawESME) expect(id pdu.ID, st pdu.Status, seq uint32) []byte {
	e.t.Helper()
	h, f := e.next()
	if h.ID != id || h.Status != st || h.Seq != seq {
		e.t.Fatalf("got %s command_status %#x seq %d, want %s %#x seq %d",
			h.ID, uint32(h.Status), h.Seq, id, uint32(st), seq)
	}
	return f
}

// wireRig is a gateway with the operator's rules (real numbers, real
// sources) and no quota: E1's alice may send to 13712345678.
func wireRig(t *testing.T) *rig {
	t.Helper()
	return newRig(t, rigOpts{rules: func(t testing.TB, db *bbolt.DB) gateway.Policy {
		pol, err := policy.New(db, policy.Config{Packages: testPackages, BcryptCost: 4, DefaultTPS: 1000})
		if err != nil {
			t.Fatal(err)
		}
		if _, err = pol.Seed(context.Background(), policy.SeedData{Enterprises: []policy.SeedEnterprise{{
			Enterprise: policy.Enterprise{Code: "E1", Name: "甲公司", Signature: "【甲公司】", Package: 1},
			Users:      []policy.NewUser{{Name: "甲", SystemID: "alice", Password: "secret1"}},
			Whitelist:  []string{"13712345678"},
		}}}); err != nil {
			t.Fatal(err)
		}
		return gateway.Rules{P: pol}
	}})
}

// SMPP 3.4 request bodies by hand (§4.4.1, §4.5.1, §4.7.1, §4.8.1,
// §4.9.1, §4.10.1), every field given: service_type, source, destination
// (or the dest_address list), schedule, validity, short_message.
type wireSM struct {
	service, src, dst, sched, valid string
	sm                              []byte
	smLen                           int // sm_length on the wire; -1: len(sm)
}

func goodSM() wireSM {
	return wireSM{src: "1069", dst: "13712345678", sm: []byte("hi"), smLen: -1}
}

func (w wireSM) smField() []byte {
	n := w.smLen
	if n < 0 {
		n = len(w.sm)
	}
	return append([]byte{byte(n)}, w.sm...)
}

func (w wireSM) submitSM() []byte {
	return bytes.Join([][]byte{
		wcs(w.service), {1, 1}, wcs(w.src), {1, 1}, wcs(w.dst),
		{0, 0, 0}, wcs(w.sched), wcs(w.valid), {0, 0, 0, 0}, w.smField(),
	}, nil)
}

// submitMulti has the dest_address entries dests (SME addresses, or a
// distribution list name after "dl:").
func (w wireSM) submitMulti(dests ...string) []byte {
	b := bytes.Join([][]byte{wcs(w.service), {1, 1}, wcs(w.src), {byte(len(dests))}}, nil)
	for _, d := range dests {
		if name, ok := strings.CutPrefix(d, "dl:"); ok {
			b = append(append(b, 2), wcs(name)...)
		} else {
			b = append(append(b, 1, 1, 1), wcs(d)...)
		}
	}
	return bytes.Join([][]byte{b, {0, 0, 0}, wcs(w.sched), wcs(w.valid), {0, 0, 0, 0}, w.smField()}, nil)
}

// dataSM carries the text in message_payload.
func (w wireSM) dataSM() []byte {
	return bytes.Join([][]byte{
		wcs(w.service), {1, 1}, wcs(w.src), {1, 1}, wcs(w.dst), {0, 0, 0},
		{0x04, 0x24, 0, byte(len(w.sm))}, w.sm,
	}, nil)
}

func rawQuerySM(id, src string) []byte {
	return bytes.Join([][]byte{wcs(id), {1, 1}, wcs(src)}, nil)
}

func rawCancelSM(service, id, src, dst string) []byte {
	return bytes.Join([][]byte{wcs(service), wcs(id), {1, 1}, wcs(src), {1, 1}, wcs(dst)}, nil)
}

func (w wireSM) replaceSM(id string) []byte {
	return bytes.Join([][]byte{wcs(id), {1, 1}, wcs(w.src), wcs(w.sched), wcs(w.valid), {0, 0}, w.smField()}, nil)
}

// TestWireFieldLimits: a request whose C-Octet String is longer than
// SMPP 3.4 §4 gives it (addresses 21 octets with the NUL, data_sm's 65,
// service_type 6, message_id 65, the times 17) is answered with its own
// response and the status §5.1.3 names for the field, its sequence number
// echoed; a short_message of 255 octets (§4.4.1: 0–254) with
// ESME_RINVMSGLEN; a field without its NUL or a short_message past the
// body's end cannot be read and gets generic_nack ESME_RINVCMDLEN. One
// octet less is what the spec allows and goes on to the rules (a
// 20-character number the rules read is sent). After each, a good
// submit_sm on the same session is accepted. Before, a 25-digit number
// was refused invalid_number (0x403), a 21-character one the rules could
// read and a source of 21 characters or more were sent to the SMSC as
// they were, service_type was not looked at, a message_id of 100
// characters was ESME_RQUERYFAIL (ESME_RCANCELFAIL, ESME_RREPLACEFAIL),
// and 255 octets of short_message were sent.
func TestWireFieldLimits(t *testing.T) {
	r := wireRig(t)
	e := dialRawESME(t, r.addr, "alice", "secret1")
	long := func(n int) string { return strings.Repeat("1", n) }
	number20 := "0086 (137) 1234-5678" // 20 characters the rules read as 13712345678
	with := func(f func(*wireSM)) wireSM { w := goodSM(); f(&w); return w }
	submitNack := pdu.GenericNACKID
	seq := uint32(100)
	for _, tc := range []struct {
		name string
		id   pdu.ID
		body []byte
		resp pdu.ID
		want pdu.Status
	}{
		// submit_sm §4.4.1
		{"submit_sm service_type 6", pdu.SubmitSMID, with(func(w *wireSM) { w.service = "ABCDEF" }).submitSM(), pdu.SubmitSMRespID, smpp.StatusInvalidServiceType},
		{"submit_sm service_type 5", pdu.SubmitSMID, with(func(w *wireSM) { w.service = "ABCDE" }).submitSM(), pdu.SubmitSMRespID, smpp.StatusOK},
		{"submit_sm source_addr 21", pdu.SubmitSMID, with(func(w *wireSM) { w.src = long(21) }).submitSM(), pdu.SubmitSMRespID, smpp.StatusInvalidSrcAddr},
		{"submit_sm source_addr 20", pdu.SubmitSMID, with(func(w *wireSM) { w.src = long(20) }).submitSM(), pdu.SubmitSMRespID, smpp.StatusOK},
		{"submit_sm destination_addr 25 digits", pdu.SubmitSMID, with(func(w *wireSM) { w.dst = long(25) }).submitSM(), pdu.SubmitSMRespID, smpp.StatusInvalidDstAddr},
		{"submit_sm destination_addr 21 the rules read", pdu.SubmitSMID, with(func(w *wireSM) { w.dst = number20 + " " }).submitSM(), pdu.SubmitSMRespID, smpp.StatusInvalidDstAddr},
		{"submit_sm destination_addr 20", pdu.SubmitSMID, with(func(w *wireSM) { w.dst = number20 }).submitSM(), pdu.SubmitSMRespID, smpp.StatusOK},
		{"submit_sm destination_addr 20 the rules refuse", pdu.SubmitSMID, with(func(w *wireSM) { w.dst = long(20) }).submitSM(), pdu.SubmitSMRespID, 0x403},
		{"submit_sm schedule 17", pdu.SubmitSMID, with(func(w *wireSM) { w.sched = "000001000000000R0" }).submitSM(), pdu.SubmitSMRespID, smpp.StatusInvalidSchedule},
		{"submit_sm validity 17", pdu.SubmitSMID, with(func(w *wireSM) { w.valid = "000001000000000R0" }).submitSM(), pdu.SubmitSMRespID, smpp.StatusInvalidExpiry},
		{"submit_sm short_message 255", pdu.SubmitSMID, with(func(w *wireSM) { w.sm = bytes.Repeat([]byte("a"), 255) }).submitSM(), pdu.SubmitSMRespID, smpp.StatusInvalidMsgLen},
		{"submit_sm short_message 254", pdu.SubmitSMID, with(func(w *wireSM) { w.sm = bytes.Repeat([]byte("a"), 254) }).submitSM(), pdu.SubmitSMRespID, smpp.StatusOK},
		{"submit_sm sm_length past the end", pdu.SubmitSMID, with(func(w *wireSM) { w.smLen = 3 }).submitSM(), submitNack, smpp.StatusInvalidCommandLen},
		{"submit_sm destination_addr without NUL", pdu.SubmitSMID, bytes.Join([][]byte{wcs(""), {1, 1}, wcs("1069"), {1, 1}, []byte(long(30))}, nil), submitNack, smpp.StatusInvalidCommandLen},

		// submit_multi §4.5.1: a whole request's fields (its dest_address
		// entries: TestWireSubmitMultiDests)
		{"submit_multi service_type 6", pdu.SubmitMultiID, with(func(w *wireSM) { w.service = "ABCDEF" }).submitMulti("13712345678"), pdu.SubmitMultiRespID, smpp.StatusInvalidServiceType},
		{"submit_multi source_addr 21", pdu.SubmitMultiID, with(func(w *wireSM) { w.src = long(21) }).submitMulti("13712345678"), pdu.SubmitMultiRespID, smpp.StatusInvalidSrcAddr},
		{"submit_multi destination_addr 21 alone", pdu.SubmitMultiID, goodSM().submitMulti(long(21)), pdu.SubmitMultiRespID, smpp.StatusInvalidDstAddr},
		{"submit_multi short_message 255", pdu.SubmitMultiID, with(func(w *wireSM) { w.sm = bytes.Repeat([]byte("a"), 255) }).submitMulti("13712345678"), pdu.SubmitMultiRespID, smpp.StatusInvalidMsgLen},
		{"submit_multi short_message 254", pdu.SubmitMultiID, with(func(w *wireSM) { w.sm = bytes.Repeat([]byte("a"), 254) }).submitMulti("13712345678"), pdu.SubmitMultiRespID, smpp.StatusOK},
		{"submit_multi destination_addr without NUL", pdu.SubmitMultiID, bytes.Join([][]byte{wcs(""), {1, 1}, wcs("1069"), {1, 1, 1, 1}, []byte(long(30))}, nil), submitNack, smpp.StatusInvalidCommandLen},

		// data_sm §4.7.1: addresses of 65 octets
		{"data_sm service_type 6", smpp.DataSMID, with(func(w *wireSM) { w.service = "ABCDEF" }).dataSM(), smpp.DataSMRespID, smpp.StatusInvalidServiceType},
		{"data_sm source_addr 65", smpp.DataSMID, with(func(w *wireSM) { w.src = long(65) }).dataSM(), smpp.DataSMRespID, smpp.StatusInvalidSrcAddr},
		{"data_sm destination_addr 65", smpp.DataSMID, with(func(w *wireSM) { w.dst = long(65) }).dataSM(), smpp.DataSMRespID, smpp.StatusInvalidDstAddr},
		{"data_sm destination_addr 64", smpp.DataSMID, with(func(w *wireSM) { w.dst = "13712345678" + strings.Repeat(" ", 53) }).dataSM(), smpp.DataSMRespID, smpp.StatusOK},
		{"data_sm destination_addr 64 the rules refuse", smpp.DataSMID, with(func(w *wireSM) { w.dst = long(64) }).dataSM(), smpp.DataSMRespID, 0x403},
		{"data_sm destination_addr without NUL", smpp.DataSMID, bytes.Join([][]byte{wcs(""), {1, 1}, wcs("1069"), {1, 1}, []byte(long(30))}, nil), submitNack, smpp.StatusInvalidCommandLen},

		// query_sm §4.8.1
		{"query_sm message_id 65", pdu.QuerySMID, rawQuerySM(long(65), ""), pdu.QuerySMRespID, smpp.StatusInvalidMsgID},
		{"query_sm message_id 64", pdu.QuerySMID, rawQuerySM(long(64), ""), pdu.QuerySMRespID, smpp.StatusQueryFailed},
		{"query_sm source_addr 21", pdu.QuerySMID, rawQuerySM("1", long(21)), pdu.QuerySMRespID, smpp.StatusInvalidSrcAddr},
		{"query_sm message_id without NUL", pdu.QuerySMID, []byte(long(30)), submitNack, smpp.StatusInvalidCommandLen},

		// cancel_sm §4.9.1
		{"cancel_sm service_type 6", smpp.CancelSMID, rawCancelSM("ABCDEF", "1", "", ""), smpp.CancelSMRespID, smpp.StatusInvalidServiceType},
		{"cancel_sm message_id 65", smpp.CancelSMID, rawCancelSM("", long(65), "", ""), smpp.CancelSMRespID, smpp.StatusInvalidMsgID},
		{"cancel_sm message_id 64", smpp.CancelSMID, rawCancelSM("", long(64), "", ""), smpp.CancelSMRespID, smpp.StatusCancelFailed},
		{"cancel_sm source_addr 21", smpp.CancelSMID, rawCancelSM("", "1", long(21), ""), smpp.CancelSMRespID, smpp.StatusInvalidSrcAddr},
		{"cancel_sm destination_addr 21", smpp.CancelSMID, rawCancelSM("", "1", "", long(21)), smpp.CancelSMRespID, smpp.StatusInvalidDstAddr},

		// replace_sm §4.10.1
		{"replace_sm message_id 65", smpp.ReplaceSMID, goodSM().replaceSM(long(65)), smpp.ReplaceSMRespID, smpp.StatusInvalidMsgID},
		{"replace_sm message_id 64", smpp.ReplaceSMID, goodSM().replaceSM(long(64)), smpp.ReplaceSMRespID, smpp.StatusReplaceFailed},
		{"replace_sm source_addr 21", smpp.ReplaceSMID, with(func(w *wireSM) { w.src = long(21) }).replaceSM("1"), smpp.ReplaceSMRespID, smpp.StatusInvalidSrcAddr},
		{"replace_sm short_message 255", smpp.ReplaceSMID, with(func(w *wireSM) { w.sm = bytes.Repeat([]byte("a"), 255) }).replaceSM("1"), smpp.ReplaceSMRespID, smpp.StatusInvalidMsgLen},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e.t = t
			seq += 2
			e.send(tc.id, seq, tc.body)
			f := e.expect(tc.resp, tc.want, seq)
			// A refused submit_multi_resp: an empty message_id and
			// no_unsuccess 0, nothing after (TestErrorResponseBodies).
			if tc.resp == pdu.SubmitMultiRespID && tc.want != smpp.StatusOK && len(f) != 18 {
				t.Errorf("submit_multi_resp % x: %d octets, want 18", f, len(f))
			}
			// The session goes on: a good submit_sm is accepted.
			e.send(pdu.SubmitSMID, seq+1, goodSM().submitSM())
			e.expect(pdu.SubmitSMRespID, smpp.StatusOK, seq+1)
		})
	}
}

// TestWireFieldLimitsReceiver: a receiver may send no request the sizes
// hold (SMPP 3.4 §2.3), so an over-long one is answered ESME_RINVBNDSTS,
// as a well-formed one is, not with the field's status.
func TestWireFieldLimitsReceiver(t *testing.T) {
	r := wireRig(t)
	nc, err := net.DialTimeout("tcp", r.addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = nc.Close() })
	e := &rawESME{t: t, nc: nc, r: bufio.NewReader(nc)}
	e.send(pdu.BindReceiverID, 1, wcs("alice"), wcs("secret1"), wcs(""), []byte{0x34, 0, 0}, wcs(""))
	e.expect(pdu.BindReceiverRespID, smpp.StatusOK, 1)
	long := strings.Repeat("1", 25)
	w := goodSM()
	w.dst = long
	e.send(pdu.SubmitSMID, 2, w.submitSM())
	e.expect(pdu.SubmitSMRespID, smpp.StatusInvalidBindStatus, 2)
	e.send(pdu.QuerySMID, 3, rawQuerySM(strings.Repeat("1", 65), ""))
	e.expect(pdu.QuerySMRespID, smpp.StatusInvalidBindStatus, 3)
}

// TestWireSubmitMultiDests: a submit_multi dest_address entry longer than
// SMPP 3.4 §4.5.1 gives it (21 octets with the NUL, an SME address or a
// dl_name) is refused on its own in unsuccess_sme, ESME_RINVDSTADR or
// ESME_RINVDLNAME, the others sent; unsuccess_sme writes its address cut
// to 20 octets, as §4.5.2 sizes it (a strict client reads each into 21).
// A 20-octet number the rules read is sent (here once with the same
// number written plainly). Before, the 25-digit number was refused
// invalid_number (0x403) and written whole, and the 21-character one the
// rules read was sent.
func TestWireSubmitMultiDests(t *testing.T) {
	r := wireRig(t)
	e := dialRawESME(t, r.addr, "alice", "secret1")
	number20 := "0086 (137) 1234-5678"
	e.send(pdu.SubmitMultiID, 2, goodSM().submitMulti(
		"13712345678", strings.Repeat("1", 25), number20, number20+" ",
		"dl:"+strings.Repeat("L", 25), "dl:"+strings.Repeat("N", 20)))
	f := e.expect(pdu.SubmitMultiRespID, smpp.StatusOK, 2)
	type entry struct {
		addr string
		st   pdu.Status
	}
	b := f[16:]
	i := bytes.IndexByte(b, 0)
	if i <= 0 {
		t.Fatalf("submit_multi_resp % x: no message_id", f)
	}
	n, b := int(b[i+1]), b[i+2:]
	var got []entry
	for range n {
		if len(b) < 3 {
			t.Fatalf("submit_multi_resp % x: unsuccess_sme cut short", f)
		}
		j := bytes.IndexByte(b[2:], 0)
		if j < 0 || len(b) < 2+j+1+4 {
			t.Fatalf("submit_multi_resp % x: unsuccess_sme cut short", f)
		}
		got = append(got, entry{string(b[2 : 2+j]), pdu.Status(binary.BigEndian.Uint32(b[2+j+1:]))})
		b = b[2+j+1+4:]
	}
	if len(b) != 0 {
		t.Errorf("submit_multi_resp: % x after unsuccess_sme", b)
	}
	want := []entry{
		{strings.Repeat("1", 20), smpp.StatusInvalidDstAddr},
		{(number20 + " ")[:20], smpp.StatusInvalidDstAddr},
		{strings.Repeat("L", 20), 0x34},
		{strings.Repeat("N", 20), 0x34}, // 20 octets: read, and no such list
	}
	if len(got) != len(want) {
		t.Fatalf("unsuccess_sme %+v, want %+v", got, want)
	}
	for k := range want {
		if got[k] != want[k] {
			t.Errorf("unsuccess_sme[%d] = %+v, want %+v", k, got[k], want[k])
		}
	}
	// The session goes on.
	e.send(pdu.SubmitSMID, 3, goodSM().submitSM())
	e.expect(pdu.SubmitSMRespID, smpp.StatusOK, 3)
}

// TestWireSubmitMultiNumDests: a submit_multi with no dest_address, or
// with 255 (SMPP 3.4 §4.5.1 allows 254), is refused whole with
// ESME_RINVNUMDESTS, its sequence echoed, and the session goes on; 254
// go. Before, 255 were taken, and none got ESME_RINVDSTADR.
func TestWireSubmitMultiNumDests(t *testing.T) {
	r := wireRig(t)
	e := dialRawESME(t, r.addr, "alice", "secret1")
	numbers := func(n int) []string {
		var out []string
		for i := range n {
			out = append(out, fmt.Sprintf("1371234%04d", i))
		}
		return out
	}
	e.send(pdu.SubmitMultiID, 2, goodSM().submitMulti(numbers(255)...))
	e.expect(pdu.SubmitMultiRespID, smpp.StatusInvalidNumDests, 2)
	e.send(pdu.SubmitMultiID, 3, goodSM().submitMulti())
	e.expect(pdu.SubmitMultiRespID, smpp.StatusInvalidNumDests, 3)
	// 254: taken, and held to the rules one by one (one of them the
	// account may send to; the others are refused in unsuccess_sme).
	e.send(pdu.SubmitMultiID, 4, goodSM().submitMulti(append(numbers(253), "13712345678")...))
	e.expect(pdu.SubmitMultiRespID, smpp.StatusOK, 4)
}
