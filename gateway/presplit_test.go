package gateway_test

import (
	"context"
	"encoding/binary"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/fiorix/go-smpp/smpp/pdu"
	"github.com/fiorix/go-smpp/smpp/pdu/pdufield"
	"github.com/fiorix/go-smpp/smpp/pdu/pdutlv"
	"golang.org/x/text/encoding/unicode"

	"github.com/qxtd/qxtd/gateway"
	"github.com/qxtd/qxtd/policy"
	"github.com/qxtd/qxtd/queue"
	"github.com/qxtd/qxtd/segment"
	"github.com/qxtd/qxtd/smpp"
)

// How the ESME marks its parts.
type splitMode int

const (
	splitUDH8 splitMode = iota
	splitUDH16
	splitSAR
)

func (m splitMode) String() string { return [...]string{"udh8", "udh16", "sar"}[m] }

// partSM is one part, seq of total, of a message the ESME split itself:
// data is this part's user data (UCS-2 octets, or unpacked GSM septets).
func partSM(dst string, coding uint8, mode splitMode, ref uint16, total, seq uint8, data []byte) pdu.Body {
	p := submitSM("1069", dst, "")
	f := p.Fields()
	_ = f.Set(pdufield.DataCoding, coding)
	sm := data
	switch mode {
	case splitUDH8:
		_ = f.Set(pdufield.ESMClass, uint8(0x40))
		sm = append([]byte{0x05, 0x00, 0x03, byte(ref), total, seq}, data...)
	case splitUDH16:
		_ = f.Set(pdufield.ESMClass, uint8(0x40))
		sm = append([]byte{0x06, 0x08, 0x04, byte(ref >> 8), byte(ref), total, seq}, data...)
	case splitSAR:
		// Two- and one-octet TLVs as []byte: Set would write one octet.
		_ = p.TLVFields().Set(pdutlv.TagSarMsgRefNum, binary.BigEndian.AppendUint16(nil, ref))
		_ = p.TLVFields().Set(pdutlv.TagSarTotalSegments, []byte{total})
		_ = p.TLVFields().Set(pdutlv.TagSarSegmentSeqnum, []byte{seq})
	}
	_ = f.Set(pdufield.ShortMessage, sm)
	return p
}

func ucs2(t testing.TB, s string) []byte {
	t.Helper()
	b, err := unicode.UTF16(unicode.BigEndian, unicode.IgnoreBOM).NewEncoder().Bytes([]byte(s))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// chunks splits b every n octets, the way go-smpp's SubmitLongMsg does
// (bytes, with no regard for the characters they encode).
func chunks(b []byte, n int) [][]byte {
	var out [][]byte
	for len(b) > n {
		out = append(out, b[:n])
		b = b[n:]
	}
	return append(out, b)
}

// sendParts submits the parts in the given order (seq numbers, 1-based)
// and returns the ids, indexed by seq-1.
func sendParts(t *testing.T, e *esme, dst string, coding uint8, mode splitMode, ref uint16, parts [][]byte, order []int) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ids := make([]string, len(parts))
	for _, seq := range order {
		id, err := e.submit(ctx, partSM(dst, coding, mode, ref, uint8(len(parts)), uint8(seq), parts[seq-1]))
		if err != nil {
			t.Fatalf("part %d: %v", seq, err)
		}
		ids[seq-1] = id
	}
	seen := map[string]bool{}
	for _, seq := range order {
		if id := ids[seq-1]; id == "" || seen[id] {
			t.Fatalf("part ids %v: empty or repeated", ids)
		}
		seen[ids[seq-1]] = true
	}
	return ids
}

// simText reassembles what the simulator received, as a handset would.
func simText(t *testing.T, r *rig, dst string) (string, int) {
	t.Helper()
	var frames []segment.Frame
	for _, m := range r.sim.Received() {
		if m.Dest == dst {
			frames = append(frames, segment.Frame{ESMClass: m.ESMClass, DataCoding: m.DataCoding, ShortMessage: m.ShortMessage, TLVs: m.TLVs})
		}
	}
	if len(frames) == 0 {
		return "", 0
	}
	text, err := segment.Reassemble(frames, segment.Options{})
	if err != nil {
		t.Fatalf("reassemble what the SMSC got: %v", err)
	}
	return text, len(frames)
}

func querySM(t *testing.T, e *esme, id string) (smpp.MessageState, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	p := pdu.NewQuerySM()
	_ = p.Fields().Set(pdufield.MessageID, id)
	resp, err := e.conn.Request(ctx, p)
	if err != nil {
		return 0, err
	}
	if got := smpp.Str(resp, pdufield.MessageID); got != id {
		t.Errorf("query_sm_resp for %s names %s", id, got)
	}
	return smpp.MessageState(smpp.Byte(resp, pdufield.MessageState)), nil
}

func wantReceipts(t *testing.T, e *esme, ids []string, state smpp.MessageState) map[string]smpp.Receipt {
	t.Helper()
	got := e.waitReceipts(t, len(ids), 10*time.Second)
	for _, id := range ids {
		rc, ok := got[id]
		if !ok {
			t.Fatalf("no receipt for part id %s (got %v)", id, got)
		}
		if rc.State != state {
			t.Errorf("receipt %s: %s, want %s", id, rc.State.Stat(), state.Stat())
		}
	}
	return got
}

// TestPresplitReassembled: a 3-part UCS-2 message split by the ESME,
// sent out of order, marked with 8-bit or 16-bit UDH references or SAR
// TLVs: each part gets its own id; the SMSC gets the signed whole text,
// re-segmented by qxtd; each part id gets a DELIVRD receipt; query_sm
// on a part id answers the message's state.
func TestPresplitReassembled(t *testing.T) {
	for _, mode := range []splitMode{splitUDH8, splitUDH16, splitSAR} {
		t.Run(mode.String(), func(t *testing.T) {
			r := newRig(t, rigOpts{sim: smpp.SimOptions{DLRDelay: time.Millisecond}})
			e, err := r.bind("esme", "pw", smpp.BindTransceiver)
			if err != nil {
				t.Fatal(err)
			}
			text := strings.Repeat("企业短信拆分重组测试", 18) // 180 characters: 3 parts of 60
			parts := chunks(ucs2(t, text), 120)
			if len(parts) != 3 {
				t.Fatalf("%d parts", len(parts))
			}
			const dst = "13800138000"
			ids := sendParts(t, e, dst, 0x08, mode, 0x1234, parts, []int{3, 1, 2})
			wantReceipts(t, e, ids, smpp.StateDelivered)
			got, n := simText(t, r, dst)
			if want := "【测试】" + text; got != want {
				t.Fatalf("SMSC got %q\nwant       %q", got, want)
			}
			if n != 3 { // 184 characters: 67 + 67 + 50
				t.Errorf("SMSC got %d segments, want 3", n)
			}
			st, err := querySM(t, e, ids[1])
			if err != nil || st != smpp.StateDelivered {
				t.Fatalf("query_sm on part 2: %s, %v", st.Stat(), err)
			}
			id, _ := strconv.ParseUint(ids[0], 10, 64)
			mid, err := r.store.AliasOf(id)
			if err != nil {
				t.Fatal(err)
			}
			m, err := r.store.Get(mid)
			if err != nil || len(m.Parts) != 3 || len(m.Aliases) != 3 {
				t.Fatalf("stored message %+v, %v", m, err)
			}
			if _, charged := r.store.Usage("esme", queue.BillingMonth(time.Now())); charged != 3 {
				t.Errorf("billed %d segments, want the 3 on the air", charged)
			}
		})
	}
}

// TestPresplitSplitCharacters: characters split across parts by the
// client — a GSM escape pair (€) in unpacked GSM, an emoji's surrogate
// pair in UCS-2 split every 134 octets as go-smpp's SubmitLongMsg does,
// even an odd octet split — come out whole.
func TestPresplitSplitCharacters(t *testing.T) {
	r := newRig(t, rigOpts{sim: smpp.SimOptions{DLRDelay: time.Millisecond}})
	e, err := r.bind("esme", "pw", smpp.BindTransceiver)
	if err != nil {
		t.Fatal(err)
	}
	// GSM: 152 letters, then € = escape 0x1B + 0x65 across the boundary
	// of 153-septet parts.
	gsm := append([]byte(strings.Repeat("a", 152)), 0x1B, 0x65)
	gsm = append(gsm, []byte(" price")...)
	gsmParts := chunks(gsm, 153)
	if len(gsmParts) != 2 || gsmParts[0][152] != 0x1B {
		t.Fatalf("GSM parts %d", len(gsmParts))
	}
	gsmIDs := sendParts(t, e, "13800138001", 0x00, splitUDH8, 7, gsmParts, []int{2, 1})

	// UCS-2: 66 Chinese characters then 😀 (a surrogate pair) at units
	// 67-68, so the 134-octet split falls between its two halves.
	emoji := strings.Repeat("中", 66) + "😀" + strings.Repeat("文", 10)
	emParts := chunks(ucs2(t, emoji), 134)
	if len(emParts) != 2 {
		t.Fatalf("emoji parts %d", len(emParts))
	}
	emIDs := sendParts(t, e, "13800138002", 0x08, splitUDH8, 8, emParts, []int{1, 2})

	// UCS-2 split at an odd octet: one UTF-16 unit across parts.
	odd := strings.Repeat("奇", 40)
	oddParts := chunks(ucs2(t, odd), 41)
	oddIDs := sendParts(t, e, "13800138003", 0x08, splitUDH16, 9, oddParts, []int{2, 1})

	wantReceipts(t, e, append(append(gsmIDs, emIDs...), oddIDs...), smpp.StateDelivered)
	for dst, want := range map[string]string{
		"13800138001": "【测试】" + strings.Repeat("a", 152) + "€ price",
		"13800138002": "【测试】" + emoji,
		"13800138003": "【测试】" + odd,
	} {
		if got, _ := simText(t, r, dst); got != want {
			t.Errorf("%s: SMSC got %q\nwant %q", dst, got, want)
		}
	}
}

// TestPresplitRetryAndConflict: a part sent again after a lost response
// gets its first id again; a different part under the same sequence
// number is refused with ESME_RSUBMITFAIL; the message goes out once.
func TestPresplitRetryAndConflict(t *testing.T) {
	r := newRig(t, rigOpts{sim: smpp.SimOptions{DLRDelay: time.Millisecond}})
	e, err := r.bind("esme", "pw", smpp.BindTransceiver)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	const dst = "13800138000"
	first, err := e.submit(ctx, partSM(dst, 0, splitUDH8, 1, 2, 1, []byte("hello ")))
	if err != nil {
		t.Fatal(err)
	}
	again, err := e.submit(ctx, partSM(dst, 0, splitUDH8, 1, 2, 1, []byte("hello ")))
	if err != nil || again != first {
		t.Fatalf("retried part: id %q (%v), want %q", again, err, first)
	}
	_, err = e.submit(ctx, partSM(dst, 0, splitUDH8, 1, 2, 1, []byte("HELLO ")))
	wantStatus(t, err, smpp.StatusSubmitFailed)
	// Still pending: query_sm on the part answers ENROUTE.
	if st, err := querySM(t, e, first); err != nil || st != smpp.StateEnroute {
		t.Fatalf("query_sm on a pending part: %s, %v", st.Stat(), err)
	}
	second, err := e.submit(ctx, partSM(dst, 0, splitUDH8, 1, 2, 2, []byte("world")))
	if err != nil {
		t.Fatal(err)
	}
	wantReceipts(t, e, []string{first, second}, smpp.StateDelivered)
	if got, n := simText(t, r, dst); got != "【测试】hello world" || n != 1 {
		t.Fatalf("SMSC got %q in %d segments", got, n)
	}
}

// TestPresplitIncompleteExpires: parts whose message never completes
// are rejected after the reassembly timeout: a REJECTD receipt for each
// part that came, nothing sent, nothing billed.
func TestPresplitIncompleteExpires(t *testing.T) {
	r := newRig(t, rigOpts{
		sim: smpp.SimOptions{DLRDelay: time.Millisecond},
		gwcfg: func(c *gateway.Config) {
			c.ReassemblyTimeout = 300 * time.Millisecond
			c.MaintainInterval = 50 * time.Millisecond
		},
	})
	e, err := r.bind("esme", "pw", smpp.BindTransceiver)
	if err != nil {
		t.Fatal(err)
	}
	parts := chunks(ucs2(t, strings.Repeat("缺", 150)), 134)
	ids := sendParts(t, e, "13800138000", 0x08, splitUDH8, 42, parts, []int{1, 3})
	got := wantReceipts(t, e, []string{ids[0], ids[2]}, smpp.StateRejected)
	if rc := got[ids[0]]; rc.Err != "incomplete" {
		t.Errorf("receipt err %q, want incomplete", rc.Err)
	}
	if n := len(r.sim.Received()); n != 0 {
		t.Fatalf("SMSC received %d segments of an incomplete message", n)
	}
	if res, ch := r.store.Usage("esme", queue.BillingMonth(time.Now())); res != 0 || ch != 0 {
		t.Fatalf("usage reserved %d charged %d, want nothing", res, ch)
	}
	if st, err := querySM(t, e, ids[2]); err != nil || st != smpp.StateRejected {
		t.Fatalf("query_sm on an expired part: %s, %v", st.Stat(), err)
	}
	// cancel_sm on a part id is refused: parts are not cancelled alone.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	cp := smpp.NewPDU(smpp.CancelSMID)
	_ = cp.Fields().Set(pdufield.MessageID, ids[0])
	_, err = e.conn.Request(ctx, cp)
	wantStatus(t, err, smpp.StatusCancelFailed)
}

// TestPresplitTooLongAfterSigning: a message the ESME split into parts
// that is longer than 500 characters once signed is rejected as a whole
// after the parts were acknowledged: a REJECTD receipt for every part,
// nothing sent, nothing billed.
func TestPresplitTooLongAfterSigning(t *testing.T) {
	r := newRig(t, rigOpts{sim: smpp.SimOptions{DLRDelay: time.Millisecond}})
	e, err := r.bind("esme", "pw", smpp.BindTransceiver)
	if err != nil {
		t.Fatal(err)
	}
	// 498 characters: fits 500 alone, not with the 4-character signature.
	parts := chunks(ucs2(t, strings.Repeat("长", 498)), 134)
	if len(parts) != 8 {
		t.Fatalf("%d parts", len(parts))
	}
	ids := sendParts(t, e, "13800138000", 0x08, splitUDH8, 200, parts, []int{1, 2, 3, 4, 5, 6, 7, 8})
	got := wantReceipts(t, e, ids, smpp.StateRejected)
	if rc := got[ids[7]]; rc.Err != "too_long" {
		t.Errorf("receipt err %q, want too_long", rc.Err)
	}
	if n := len(r.sim.Received()); n != 0 {
		t.Fatalf("SMSC received %d segments of a refused message", n)
	}
	if res, ch := r.store.Usage("esme", queue.BillingMonth(time.Now())); res != 0 || ch != 0 {
		t.Fatalf("usage reserved %d charged %d, want nothing", res, ch)
	}
}

// TestPresplitCompletedBeforeCrash: every part was acknowledged (stored)
// but the process stopped before the message was assembled; housekeeping
// assembles it and sends it once.
func TestPresplitCompletedBeforeCrash(t *testing.T) {
	r := newRig(t, rigOpts{
		sim:   smpp.SimOptions{DLRDelay: time.Millisecond},
		gwcfg: func(c *gateway.Config) { c.MaintainInterval = 50 * time.Millisecond },
	})
	e, err := r.bind("esme", "pw", smpp.BindTransceiver)
	if err != nil {
		t.Fatal(err)
	}
	// Stored the way submitPart stores them, but never assembled.
	g := queue.FragmentGroup{Account: "esme", Source: "1069", Dest: "13800138000", Ref: 3, Total: 2}
	var ids []string
	for seq, data := range []string{"stored before ", "the crash"} {
		res, err := r.store.StoreFragment(context.Background(), &queue.Fragment{
			FragmentGroup: g, Seq: uint8(seq + 1), Enterprise: "esme", Coding: uint8(segment.GSM7),
			Data: []byte(data), RegisteredDelivery: 1, Signature: "【测试】",
		}, queue.FragmentLimits{})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, strconv.FormatUint(res.ID, 10))
	}
	wantReceipts(t, e, ids, smpp.StateDelivered)
	if got, n := simText(t, r, g.Dest); got != "【测试】stored before the crash" || n != 1 {
		t.Fatalf("SMSC got %q in %d segments", got, n)
	}
}

// TestPresplitQueueFull: parts that would open more pending messages than
// the cap are refused with ESME_RMSGQFUL; parts of a pending one are not.
func TestPresplitQueueFull(t *testing.T) {
	r := newRig(t, rigOpts{gwcfg: func(c *gateway.Config) { c.ReassemblyMaxGroups = 1 }})
	e, err := r.bind("esme", "pw", smpp.BindTransceiver)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := e.submit(ctx, partSM("13800138000", 0, splitSAR, 1, 3, 1, []byte("a"))); err != nil {
		t.Fatal(err)
	}
	_, err = e.submit(ctx, partSM("13800138000", 0, splitSAR, 2, 3, 1, []byte("b")))
	wantStatus(t, err, smpp.StatusMsgQueueFull)
	if _, err := e.submit(ctx, partSM("13800138000", 0, splitSAR, 1, 3, 2, []byte("c"))); err != nil {
		t.Fatal(err)
	}
}

// TestPresplitPolicy runs the operator's rules on split messages: a part
// to a number off the whitelist is refused on its own response; a
// message within the quota goes out; one that would take the enterprise
// past its monthly cap once joined and re-segmented is rejected as a
// whole, every part with a REJECTD receipt, nothing reserved.
func TestPresplitPolicy(t *testing.T) {
	r, pol := policyRig(t, smpp.SimOptions{DLRDelay: time.Millisecond})
	setTPS := func(tps int) {
		t.Helper()
		if _, err := pol.UpdateEnterprise(policy.OperatorActor("test"), "E1", func(e *policy.Enterprise) error {
			e.TPS = tps
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	alice, err := r.bind("alice", "secret1", smpp.BindTransceiver)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err = alice.submit(ctx, partSM("13712340000", 0, splitUDH8, 1, 2, 1, []byte("hello ")))
	wantStatus(t, err, 0x400)

	// The rate limit takes one token per part, none for the joined
	// message: with 2 per second, two parts use up the second's tokens
	// and the message still goes.
	setTPS(2)
	time.Sleep(1100 * time.Millisecond) // a full bucket
	const dst = "13712345678"
	small := sendParts(t, alice, dst, 0, splitUDH8, 2, [][]byte{[]byte("hello "), []byte("world")}, []int{2, 1})
	wantReceipts(t, alice, small, smpp.StateDelivered)
	setTPS(1000)
	if got, _ := simText(t, r, dst); got != "【甲公司】hello world" {
		t.Fatalf("SMSC got %q", got)
	}
	// 450 GSM characters + the signature: UCS-2, 7 segments; the cap is 5.
	big := chunks([]byte(strings.Repeat("x", 450)), 153)
	ids := sendParts(t, alice, dst, 0, splitSAR, 3, big, []int{1, 2, 3})
	got := alice.waitReceipts(t, len(small)+len(ids), 10*time.Second)
	for _, id := range ids {
		if rc := got[id]; rc.State != smpp.StateRejected || rc.Err != "quota_exceeded" {
			t.Errorf("receipt %s: %s err %q, want REJECTD quota_exceeded", id, rc.State.Stat(), rc.Err)
		}
	}
	if res, ch := r.store.Usage("E1", queue.BillingMonth(time.Now())); res != 0 || ch != 1 {
		t.Fatalf("usage reserved %d charged %d, want 0 and 1", res, ch)
	}
	if n := len(r.sim.Received()); n != 1 {
		t.Fatalf("SMSC received %d segments, want 1", n)
	}
}

// TestPresplitEnterpriseShare: enterprise A, from two accounts, opens
// split messages it never completes until it is refused with
// ESME_RMSGQFUL — at its share of the reassembly pool (a quarter by
// default), not when the pool is full — and enterprise B's split message
// is still accepted and delivered whole.
func TestPresplitEnterpriseShare(t *testing.T) {
	r := newRig(t, rigOpts{
		sim: smpp.SimOptions{DLRDelay: time.Millisecond},
		accounts: gateway.StaticAccounts{
			"a1": {Password: "pw", Account: gateway.Account{Enterprise: "A"}},
			"a2": {Password: "pw", Account: gateway.Account{Enterprise: "A"}},
			"b":  {Password: "pw", Account: gateway.Account{Enterprise: "B"}},
		},
		gwcfg: func(c *gateway.Config) { c.ReassemblyMaxBytes = 4000 }, // A's share: 1000 octets
	})
	var as []*esme
	for _, id := range []string{"a1", "a2"} {
		e, err := r.bind(id, "pw", smpp.BindTransceiver)
		if err != nil {
			t.Fatal(err)
		}
		as = append(as, e)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	half := ucs2(t, strings.Repeat("未", 70)) // 140 octets: one part of two
	n := 0
	for ; ; n++ {
		_, err := as[n%2].submit(ctx, partSM("13800138000", 0x08, splitUDH16, uint16(n), 2, 1, half))
		if err != nil {
			wantStatus(t, err, smpp.StatusMsgQueueFull)
			break
		}
		if n > 100 {
			t.Fatal("A never refused")
		}
	}
	if n != 7 {
		t.Errorf("A had %d parts of 140 octets accepted, want 7 (its share is 1000 octets)", n)
	}
	_, err := as[1].submit(ctx, partSM("13800138001", 0x08, splitUDH16, 1, 2, 1, half))
	wantStatus(t, err, smpp.StatusMsgQueueFull) // the other account too

	b, err := r.bind("b", "pw", smpp.BindTransceiver)
	if err != nil {
		t.Fatal(err)
	}
	text := strings.Repeat("乙公司的正常长短信", 14) // 126 characters: 2 parts
	const dst = "13900139000"
	ids := sendParts(t, b, dst, 0x08, splitUDH8, 9, chunks(ucs2(t, text), 134), []int{1, 2})
	wantReceipts(t, b, ids, smpp.StateDelivered)
	if got, _ := simText(t, r, dst); got != text {
		t.Fatalf("SMSC got %q\nwant       %q", got, text)
	}
}

// partSMAsked is partSM with the part's own registered_delivery.
func partSMAsked(dst string, ref uint16, total, seq, registered uint8, data []byte) pdu.Body {
	p := partSM(dst, 0x08, splitUDH8, ref, total, seq, data)
	_ = p.Fields().Set(pdufield.RegisteredDelivery, registered)
	return p
}

// TestPresplitReceiptsAsEachPartAsked: each part of a message the ESME
// split gets a receipt only if its own submit_sm asked for one. Kannel
// asks on the first part only (a receipt for part 2 is an error in its
// log: "got DLR but could not find message"), other clients on the last
// (which qxtd, taking the first part's registered_delivery for all,
// answered with no receipt at all); "on failure only" is kept per part.
func TestPresplitReceiptsAsEachPartAsked(t *testing.T) {
	r := newRig(t, rigOpts{sim: smpp.SimOptions{DLRDelay: time.Millisecond, Faults: smpp.Faults{UndelivPrefix: "139"}}})
	e, err := r.bind("esme", "pw", smpp.BindTransceiver)
	if err != nil {
		t.Fatal(err)
	}
	parts := chunks(ucs2(t, strings.Repeat("每个分段自己要回执", 20)), 120) // 180 characters: 3 parts
	for i, c := range []struct {
		name  string
		dst   string
		asked [3]uint8
		want  []int // the parts (1-based) that get a receipt
		state smpp.MessageState
	}{
		{"first part asks (Kannel)", "13800138001", [3]uint8{1, 0, 0}, []int{1}, smpp.StateDelivered},
		{"last part asks", "13800138002", [3]uint8{0, 0, 1}, []int{3}, smpp.StateDelivered},
		{"on failure only, delivered", "13800138003", [3]uint8{2, 0, 2}, nil, smpp.StateDelivered},
		{"on failure only and always, undeliverable", "13900139004", [3]uint8{2, 1, 0}, []int{1, 2}, smpp.StateUndeliverable},
		{"none asks", "13800138005", [3]uint8{0, 0, 0}, nil, smpp.StateDelivered},
		{"all ask", "13800138006", [3]uint8{1, 1, 1}, []int{1, 2, 3}, smpp.StateDelivered},
	} {
		t.Run(c.name, func(t *testing.T) {
			before := e.receipts()
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			ids := make([]string, 3)
			for seq := range 3 {
				if ids[seq], err = e.submit(ctx, partSMAsked(c.dst, uint16(0x100+i), 3, uint8(seq+1), c.asked[seq], parts[seq])); err != nil {
					t.Fatalf("part %d: %v", seq+1, err)
				}
			}
			// Every receipt the message is to get has been answered once
			// the store records it forwarded: wait for that, then look.
			first, _ := strconv.ParseUint(ids[0], 10, 64)
			var m *queue.Message
			waitFor(t, 10*time.Second, "the message final and its receipts acknowledged", func() bool {
				mid, err := r.store.AliasOf(first)
				if err != nil {
					return false
				}
				m, err = r.store.Get(mid)
				return err == nil && m.State().Final() && m.DLRForwarded
			})
			if got := wireStateOf(m); got != c.state {
				t.Fatalf("message %s, want %s", got.Stat(), c.state.Stat())
			}
			after := e.receipts()
			var got []int
			for seq, id := range ids {
				if _, ok := after[id]; ok {
					got = append(got, seq+1)
					if _, old := before[id]; old {
						t.Fatalf("part id %s reused", id)
					}
				}
			}
			if !slices.Equal(got, c.want) {
				t.Fatalf("receipts for parts %v, want %v (asked %v)", got, c.want, c.asked)
			}
			for _, seq := range c.want {
				if rc := after[ids[seq-1]]; rc.State != c.state {
					t.Errorf("receipt of part %d: %s, want %s", seq, rc.State.Stat(), c.state.Stat())
				}
			}
		})
	}
}

// wireStateOf is the state a receipt of m carries.
func wireStateOf(m *queue.Message) smpp.MessageState {
	return gateway.ReceiptFor(m).State
}
