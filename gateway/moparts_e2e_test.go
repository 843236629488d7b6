package gateway_test

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/qxtd/qxtd/gateway"
	"github.com/qxtd/qxtd/policy"
	"github.com/qxtd/qxtd/queue"
	"github.com/qxtd/qxtd/smpp"
	"github.com/qxtd/qxtd/webhook"
)

// udh8 and udh16 are concatenation UDHs with an 8-bit and a 16-bit
// reference.
func udh8(ref, total, seq byte) []byte { return []byte{5, 0, 3, ref, total, seq} }

func udh16(ref uint16, total, seq byte) []byte {
	return []byte{6, 8, 4, byte(ref >> 8), byte(ref), total, seq}
}

// replyPart is one deliver_sm of a reply the SMSC split.
type replyPart struct {
	coding uint8
	udh    []byte
	data   []byte
}

// injectParts sends each part from source to dest as the SMSC would,
// each acknowledged (stored) before the next.
func injectParts(t *testing.T, r *rig, source, dest string, parts ...replyPart) {
	t.Helper()
	for i, p := range parts {
		sm := smpp.SM{SourceAddr: source, DestinationAddr: dest, ESMClass: 0x40, DataCoding: p.coding,
			ShortMessage: append(slices.Clone(p.udh), p.data...)}
		if err := r.sim.InjectDeliverSM(sm); err != nil {
			t.Fatalf("inject part %d (%x): %v", i+1, p.udh, err)
		}
	}
}

func inboxOf(t *testing.T, s *queue.Store, ent string) []*queue.MO {
	t.Helper()
	list, _, err := s.Inbox(ent, queue.InboxFilter{}, 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	return list
}

// TestReplyPartsJoined: long replies the SMSC split (deliver_sm with
// esm_class UDHI) reach the enterprise whole, once: in its inbox, at its
// receiver (one deliver_sm each) and at its reply_url, and a TD reply in
// two parts opts its sender out. The parts come out of order, one is sent
// again (a lost deliver_sm_resp), a GSM escape and a UTF-16 surrogate
// pair are split across parts, and one reply's parts carry an 8-bit and
// a 16-bit reference of one value. Before, each part was a reply of its
// own: the ESME, the webhook, the inbox and the opt-out check saw
// fragments.
func TestReplyPartsJoined(t *testing.T) {
	r, pol := twoWayRig(t, rigOpts{})
	ucs2 := func(s string) []byte { return ucs2(t, s) }
	posts := replyReceiver(t, r, pol, "whsec_parts")
	alice, err := r.bind("alice", "secret1", smpp.BindReceiver)
	if err != nil {
		t.Fatal(err)
	}
	waitReady(t, r)
	const to = "10657500112" // alice's extension
	// GSM, 8-bit reference, three parts: 3, 1, 1 again, 2. Part 1 ends
	// with the escape of the euro sign, part 2 starts with its code.
	gsm := []replyPart{
		{0, udh8(0x42, 3, 3), []byte("and the end.")},
		{0, udh8(0x42, 3, 1), []byte("first part costs 5\x1b")},
		{0, udh8(0x42, 3, 1), []byte("first part costs 5\x1b")},
		{0, udh8(0x42, 3, 2), []byte("\x65, second part, ")},
	}
	// UCS-2, 16-bit reference, a surrogate pair (U+1F600) split: 2 then 1.
	smile := ucs2("😀")
	ucs := []replyPart{
		{8, udh16(0x1234, 2, 2), append(smile[2:], ucs2("后一半。")...)},
		{8, udh16(0x1234, 2, 1), append(ucs2("前一半"), smile[:2]...)},
	}
	// One reference value, 8-bit in one part and 16-bit in the other.
	mixed := []replyPart{
		{0, udh16(0x0034, 2, 2), []byte("world")},
		{0, udh8(0x34, 2, 1), []byte("hello ")},
	}
	// An opt-out in two parts: only the whole text is a keyword.
	optOut := []replyPart{
		{8, udh8(7, 2, 1), ucs2("退")},
		{8, udh8(7, 2, 2), ucs2("订")},
	}
	injectParts(t, r, "13712345678", to, gsm...)
	injectParts(t, r, "13712345678", to, ucs...)
	injectParts(t, r, "13712345678", to, mixed...)
	injectParts(t, r, "13923412345", to, optOut...)
	want := []string{"first part costs 5€, second part, and the end.", "前一半😀后一半。", "hello world", "退订"}

	// Each last part was answered once its reply was stored: the inbox
	// is final.
	var inbox []string
	for _, m := range inboxOf(t, r.store, "E1") {
		inbox = append(inbox, m.Text)
		if m.PartsMissing != 0 || m.Account != "alice" || m.Dest != to {
			t.Errorf("reply %+v", m)
		}
	}
	slices.Reverse(inbox) // newest first
	if !slices.Equal(inbox, want) {
		t.Fatalf("E1's inbox %q, want %q", inbox, want)
	}
	var got []string
	for _, m := range alice.waitMOs(t, len(want)) {
		got = append(got, moText(t, m))
	}
	if !slices.Equal(got, want) {
		t.Fatalf("alice got %q, want %q", got, want)
	}
	var posted []string
	for range want {
		select {
		case p := <-posts:
			var rp webhook.Reply
			if err := json.Unmarshal(p.body, &rp); err != nil {
				t.Fatal(err)
			}
			posted = append(posted, rp.Text)
		case <-time.After(10 * time.Second):
			t.Fatalf("POSTed %q, want %q", posted, want)
		}
	}
	slices.Sort(posted)
	slices.Sort(want)
	if !slices.Equal(posted, want) {
		t.Fatalf("POSTed %q, want %q", posted, want)
	}
	list, _, err := pol.ListOptOuts(policy.OperatorActor("op"), "E1", "", 0)
	if err != nil || len(list) != 1 || list[0].Number != "+8613923412345" {
		t.Fatalf("E1's opt-outs %+v, %v; want the sender of 退订", list, err)
	}
	for key, want := range map[string]float64{
		"qxtd_mo_received_total,result=matched": 4,
		"qxtd_mo_joined_total,how=complete":     4,
		"qxtd_mo_parts_total,outcome=stored":    10,
		"qxtd_mo_parts_total,outcome=alone":     0,
	} {
		if got := counters(t, r)[key]; got != want {
			t.Errorf("%s = %v, want %v", key, got, want)
		}
	}
	if n, _, err := r.store.MOPartsPending("sim"); err != nil || n != 0 {
		t.Fatalf("%d parts pending (%v), want none", n, err)
	}
}

// TestReplyPartsJoinedAfterCrash: the parts of a reply all stored (the
// SMSC answered OK for each) but never joined — the daemon died between
// the last part's answer and the join — are joined at the next start,
// once: one reply in the inbox and at the receiver, still one after
// another restart.
func TestReplyPartsJoinedAfterCrash(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.db")
	r, _ := twoWayRig(t, rigOpts{dbPath: path})
	r.stop()
	// What the crashed daemon left: every part, no reply.
	s, err := queue.Open(path, queue.Options{})
	if err != nil {
		t.Fatal(err)
	}
	for seq, text := range []string{"left by ", "a crash"} {
		p := &queue.MOPart{MOPartGroup: queue.MOPartGroup{Upstream: "sim", Source: "13712345678", Dest: "10657500112", Ref: 9, Total: 2},
			Seq: uint8(seq + 1), Data: []byte(text)}
		if _, err := s.StoreMOPart(context.Background(), p, queue.MOPartLimits{}); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	r2, _ := twoWayRig(t, rigOpts{dbPath: path})
	alice, err := r2.bind("alice", "secret1", smpp.BindReceiver)
	if err != nil {
		t.Fatal(err)
	}
	if m := alice.waitMOs(t, 1)[0]; moText(t, m) != "left by a crash" {
		t.Fatalf("alice got %q", moText(t, m))
	}
	r2.stop()
	r3, _ := twoWayRig(t, rigOpts{dbPath: path})
	eventually(t, 10*time.Second, "the start's housekeeping", func() bool {
		n, _, err := r3.store.MOPartsPending("sim")
		return err == nil && n == 0
	})
	if in := inboxOf(t, r3.store, "E1"); len(in) != 1 || in[0].Text != "left by a crash" {
		t.Fatalf("inbox after two restarts %+v, want the one reply", in)
	}
}

// TestReplyPartsTimeout: a reply whose parts do not all come is stored,
// at the reassembly timeout, as one reply of the parts that came, in
// order, saying how many are missing; never dropped.
func TestReplyPartsTimeout(t *testing.T) {
	r, _ := twoWayRig(t, rigOpts{gwcfg: func(c *gateway.Config) {
		c.MOReassemblyTimeout, c.MaintainInterval = 300*time.Millisecond, 50*time.Millisecond
	}})
	alice, err := r.bind("alice", "secret1", smpp.BindReceiver)
	if err != nil {
		t.Fatal(err)
	}
	waitReady(t, r)
	injectParts(t, r, "13712345678", "10657500112",
		replyPart{0, udh8(5, 3, 3), []byte("the end")},
		replyPart{0, udh8(5, 3, 1), []byte("the start, ")})
	if in := inboxOf(t, r.store, "E1"); len(in) != 0 {
		t.Fatalf("inbox before the timeout %+v, want nothing yet", in)
	}
	if m := alice.waitMOs(t, 1)[0]; moText(t, m) != "the start, the end" {
		t.Fatalf("alice got %q", moText(t, m))
	}
	in := inboxOf(t, r.store, "E1")
	if len(in) != 1 || in[0].PartsMissing != 1 || in[0].Text != "the start, the end" {
		t.Fatalf("inbox %+v, want one reply, 1 part missing", in)
	}
	if got := counters(t, r)["qxtd_mo_joined_total,how=timeout"]; got != 1 {
		t.Errorf("qxtd_mo_joined_total{how=timeout} = %v, want 1", got)
	}
}

// logLines is a slog handler's output, safe for the gateway's goroutines.
type logLines struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logLines) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logLines) count(s string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Count(l.b.String(), s)
}

// TestReplyPartsCap: an SMSC sending first parts that never complete
// fills its upstream's room for parts and no more: a part past the cap is
// stored at once as a reply of its own (answered, counted, logged once),
// and the parts pending never exceed the cap, even with the part that
// would complete a pending group (it is alone too).
func TestReplyPartsCap(t *testing.T) {
	logs := &logLines{}
	r, _ := twoWayRig(t, rigOpts{
		log:   slog.New(slog.NewTextHandler(logs, nil)),
		gwcfg: func(c *gateway.Config) { c.MOReassemblyMaxParts = 3 },
	})
	waitReady(t, r)
	for ref := range byte(6) {
		injectParts(t, r, "13712345678", "10657500112", replyPart{0, udh8(ref, 2, 1), []byte{'a' + ref}})
		if n, _, err := r.store.MOPartsPending("sim"); err != nil || n > 3 {
			t.Fatalf("%d parts pending (%v), past the cap of 3", n, err)
		}
	}
	in := inboxOf(t, r.store, "E1")
	if len(in) != 3 || in[0].Text != "f" || in[2].Text != "d" {
		t.Fatalf("inbox %+v, want the 3 parts past the cap, each alone", in)
	}
	if got := counters(t, r)["qxtd_mo_parts_total,outcome=alone"]; got != 3 {
		t.Errorf("qxtd_mo_parts_total{outcome=alone} = %v, want 3", got)
	}
	if n := logs.count("at the cap"); n != 1 {
		t.Errorf("the cap logged %d times, want once", n)
	}
	// A pending group's last part is a new part too: past the cap it is
	// alone; a part sent again (replacing one) still fits.
	injectParts(t, r, "13712345678", "10657500112", replyPart{0, udh8(0, 2, 1), []byte("a")})
	if n, _, _ := r.store.MOPartsPending("sim"); n != 3 || len(inboxOf(t, r.store, "E1")) != 3 {
		t.Fatalf("a part sent again at the cap: %d pending, %d replies", n, len(inboxOf(t, r.store, "E1")))
	}
	injectParts(t, r, "13712345678", "10657500112", replyPart{0, udh8(0, 2, 2), []byte("z")})
	if in := inboxOf(t, r.store, "E1"); len(in) != 4 || in[0].Text != "z" {
		t.Fatalf("inbox %+v, want the fourth part past the cap alone", in)
	}
}

// TestReplyPartSentAgainAfterJoin: the SMSC sends a part again after
// its reply was joined (our answer to it lost): it is answered and not
// kept, so no second, partial reply comes at the timeout. Before, it
// started a group of its own and became one, with parts_missing.
func TestReplyPartSentAgainAfterJoin(t *testing.T) {
	r, _ := twoWayRig(t, rigOpts{gwcfg: func(c *gateway.Config) {
		c.MOReassemblyTimeout, c.MaintainInterval = 300*time.Millisecond, 50*time.Millisecond
	}})
	alice, err := r.bind("alice", "secret1", smpp.BindReceiver)
	if err != nil {
		t.Fatal(err)
	}
	waitReady(t, r)
	first, last := replyPart{0, udh8(6, 2, 1), []byte("joined once, ")}, replyPart{0, udh8(6, 2, 2), []byte("not twice")}
	injectParts(t, r, "13712345678", "10657500112", first, last)
	if m := alice.waitMOs(t, 1)[0]; moText(t, m) != "joined once, not twice" {
		t.Fatalf("alice got %q", moText(t, m))
	}
	injectParts(t, r, "13712345678", "10657500112", last) // answered: no error
	if n, _, err := r.store.MOPartsPending("sim"); err != nil || n != 0 {
		t.Fatalf("%d parts pending after the part sent again (%v), want 0", n, err)
	}
	// A probe: a part whose reply never completes, sent after the part
	// sent again; once it is stored at its timeout, the part sent again
	// would have been too, had it been kept.
	injectParts(t, r, "13712345678", "10657500112", replyPart{0, udh8(7, 2, 1), []byte("probe")})
	eventually(t, 10*time.Second, "the probe stored at its timeout", func() bool {
		return counters(t, r)["qxtd_mo_joined_total,how=timeout"] == 1
	})
	if in := inboxOf(t, r.store, "E1"); len(in) != 2 || in[0].Text != "probe" || in[1].Text != "joined once, not twice" {
		t.Fatalf("inbox %+v, want the joined reply and the probe", in)
	}
	if got := counters(t, r)["qxtd_mo_parts_total,outcome=again"]; got != 1 {
		t.Errorf("qxtd_mo_parts_total{outcome=again} = %v, want 1", got)
	}
}
