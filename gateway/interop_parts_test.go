package gateway_test

import (
	"encoding/hex"
	"net"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/qxtd/qxtd/policy"
)

// What the interop tests of long replies in parts share
// (TestInteropNodeSMPPLongReplies, TestInteropLibsmpp34LongReplies): an
// ESME of another library bound as alice's receiver, her long_replies
// udh8, udh16 or sar, the same three replies from the handset, the same
// "deliver" line from each library's program, the same checks.

// longRepliesModes are the part formats long_replies chooses: the GSM
// septets a part holds (UCS-2: 67 and 66 alike) and the concatenation
// IE, -1 for the SAR TLVs.
var longRepliesModes = []struct {
	mode string
	gsm  int
	iei  int
}{
	{"udh8", 153, 0x00},
	{"udh16", 152, 0x08},
	{"sar", 153, -1},
}

// gsmBase holds only characters of the GSM basic table, many of them not
// ASCII or at other codes than ASCII's ('@' 0x00, '$' 0x02, '_' 0x11).
// node-smpp 0.5.1 decodes data_coding 0 with its own GSM 03.38 table
// (defs.js gsmCoder.GSM, encodings.ASCII): every code of the basic table
// and the ten of the extension table decode as GSM says (each one put
// through 0.5.1's decoder once, by hand), letters such as Ä, Ö, Ñ, Ü and ß
// included, so no character needs leaving out. It decodes each part on
// its own: a part ending in an escape would read with a U+001B at its end
// and the next with a plain 'e' where '€' was, so a split escape shows in
// the joined text. libsmpp34 decodes no text: its test decodes each
// part's octets on its own, with qxtd's GSM table, and refuses a part
// ending in an escape.
const gsmBase = "Réponse @home: 5$ für Äpfel & Öl, süß? ÑÜ§¿ àèéùìò_ΔΦΓΛΩΠΨΣΘΞ ØøÅåÆæÉ £¥¤ 0123456789! "

// handsetReply is a reply the handset sends: its text, the data_coding
// its parts come in and how many.
type handsetReply struct {
	text       string
	dataCoding int
	parts      int
}

// longRepliesTest is one run: the rig, alice's long_replies and the
// replies the handset sends.
type longRepliesTest struct {
	lib        string // the ESME's library, for messages
	mode       string // alice's long_replies
	perPart    int    // GSM septets a part holds
	iei        int    // the concatenation IE, -1 for the SAR TLVs
	r          *rig
	host, port string
	gsm        string // the GSM reply, of want
	want       []handsetReply
	deliveries int // the parts of want
}

// newLongReplies starts the two-way rig with alice's long_replies set to
// mode (read at bind: before she binds), its upstream bound.
func newLongReplies(t *testing.T, lib, mode string, perPart, iei int) *longRepliesTest {
	r, pol := twoWayRig(t, rigOpts{})
	if _, err := pol.UpdateUser(policy.OperatorActor("test"), "alice", policy.UserUpdate{LongReplies: &mode}); err != nil {
		t.Fatal(err)
	}
	waitReady(t, r)
	host, port, err := net.SplitHostPort(r.addr)
	if err != nil {
		t.Fatal(err)
	}
	lt := &longRepliesTest{lib: lib, mode: mode, perPart: perPart, iei: iei, r: r, host: host, port: port}

	// The GSM reply: perPart-1 septets of the basic table, then '€' (the
	// escape 0x1B and 0x65), which a naive split would cut after the
	// escape, then escaped characters in the second part.
	prefix := []rune(strings.Repeat(gsmBase, 3))[:perPart-1]
	lt.gsm = string(prefix) + "€ and [brackets], {braces}, ~, ^, | and \\ too. End."
	// The UCS-2 reply: 150 Chinese characters, 3 parts of 67 (66 with a
	// 16-bit reference).
	chinese := strings.Repeat("这是一条很长的中文回复，", 12) + "请分段发送！"
	if n := utf8.RuneCountInString(chinese); n != 150 {
		t.Fatalf("the Chinese reply has %d characters, want 150", n)
	}
	lt.want = []handsetReply{{lt.gsm, 0, 2}, {chinese, 8, 3}, {"好的，收到", 8, 1}}
	for _, w := range lt.want {
		lt.deliveries += w.parts
	}
	return lt
}

// deliveredPart is one deliver_sm as the ESME's library read it (a "deliver"
// line).
type deliveredPart struct {
	line            string
	src, dst        string
	dataCoding, esm int
	udh             []byte // the IEs, without the UDHL octet; nil: none
	sar             bool   // the three SAR TLVs are there
	ref, total, seq int    // from the concatenation IE or the SAR TLVs
	concat          bool   // a concatenation IE or the SAR TLVs
	udhIEI          int    // the concatenation IE's IEI, -1 for none
	payload         string // message_payload's length, "-" for none
	text            string // the part's text alone
}

// parseDeliveredPart reads a "deliver" line, "deliver <source_addr>
// <destination_addr> <data_coding> <esm_class> <udh> <sar_msg_ref_num>
// <sar_total_segments> <sar_segment_seqnum> <payload> <text>": the UDH's
// IEs the library found (their concatenation IE read here, 0x00 with an
// 8-bit reference or 0x08 with a 16-bit one) and the SAR TLVs as it read
// them. The last field, the text as the library gives it, is returned
// for the caller to read into text.
func parseDeliveredPart(t *testing.T, lib, line string) (deliveredPart, string) {
	t.Helper()
	f := strings.SplitN(line, " ", 11)
	if len(f) != 11 || f[0] != "deliver" {
		t.Fatalf("%s said %q, want a deliver line", lib, line)
	}
	num := func(s string) int {
		n, err := strconv.Atoi(s)
		if err != nil {
			t.Fatalf("%q in %q: %v", s, line, err)
		}
		return n
	}
	p := deliveredPart{line: line, src: f[1], dst: f[2], dataCoding: num(f[3]), esm: num(f[4]), udhIEI: -1, payload: f[9]}
	if f[5] != "-" {
		udh, err := hex.DecodeString(f[5])
		if err != nil {
			t.Fatalf("the UDH in %q: %v", line, err)
		}
		p.udh = udh
		for ie := udh; len(ie) > 0; {
			if len(ie) < 2 || len(ie) < 2+int(ie[1]) {
				t.Fatalf("the UDH in %q: a cut IE", line)
			}
			iei, d := ie[0], ie[2:2+int(ie[1])]
			switch {
			case iei == 0x00 && len(d) == 3:
				p.ref, p.total, p.seq = int(d[0]), int(d[1]), int(d[2])
			case iei == 0x08 && len(d) == 4:
				p.ref, p.total, p.seq = int(d[0])<<8|int(d[1]), int(d[2]), int(d[3])
			default:
				ie = ie[2+len(d):]
				continue
			}
			if p.concat {
				t.Fatalf("the UDH in %q: two concatenation IEs", line)
			}
			p.concat, p.udhIEI = true, int(iei)
			ie = ie[2+len(d):]
		}
	}
	if sar := f[6:9]; sar[0] != "-" || sar[1] != "-" || sar[2] != "-" {
		if slices.Contains(sar, "-") {
			t.Fatalf("%q: only some of the SAR TLVs", line)
		}
		if p.concat {
			t.Fatalf("%q: a concatenation IE and the SAR TLVs", line)
		}
		p.sar, p.concat = true, true
		p.ref, p.total, p.seq = num(sar[0]), num(sar[1]), num(sar[2])
	}
	return p, f[10]
}

// run reads es, the ESME bound as alice's receiver that answers every
// deliver_sm OK and unbinds after lt.deliveries of them: its "bound"
// line, then the handset's replies are sent, then its lines until it
// ends, each "deliver" line read by parseDeliveredPart and its last field by
// text. Then it checks each part as the mode frames it, joins the parts
// by reference and sequence and checks what they join into: each reply
// as the handset wrote it, its '€' whole in the second part, the short
// one whole without a UDH or SAR TLVs; never in message_payload; one
// acknowledgement a reply.
func (lt *longRepliesTest) run(t *testing.T, es *script, text func(t *testing.T, p *deliveredPart, last string)) {
	t.Helper()
	if l := es.next(); l != "bound" {
		t.Fatalf("%s said %q, want bound", lt.lib, l)
	}
	for _, w := range lt.want {
		// alice: enterprise E1's service number 106575001 and her extension 12.
		if err := lt.r.sim.InjectMO("13712345678", "10657500112", w.text); err != nil {
			t.Fatal(err)
		}
	}
	var out []string
	var parts []deliveredPart
	unbound := ""
	for line := range es.lines {
		out = append(out, line)
		switch {
		case strings.HasPrefix(line, "deliver "):
			p, last := parseDeliveredPart(t, lt.lib, line)
			text(t, &p, last)
			parts = append(parts, p)
		case strings.HasPrefix(line, "unbound "):
			unbound = strings.TrimPrefix(line, "unbound ")
		}
	}
	if err := es.wait(); err != nil {
		t.Fatalf("%s ESME: %v\nits output:\n%s", lt.lib, err, strings.Join(out, "\n"))
	}
	if unbound != "0x00000000" {
		t.Errorf("unbind: %q, want 0x00000000", unbound)
	}
	if len(parts) != lt.deliveries {
		t.Fatalf("%s got %d deliver_sm, want %d:\n%s", lt.lib, len(parts), lt.deliveries, strings.Join(out, "\n"))
	}
	lt.check(t, parts, out)
	// One acknowledgement a reply, not a part.
	waitFor(t, 10*time.Second, "3 replies acknowledged", func() bool { return counters(t, lt.r)["qxtd_mo_forwarded_total,outcome=ok"] == 3 })
}

// check checks each part as the mode frames it; then joins them by
// reference, in the order each reference first came, a part without a
// concatenation a reply of its own, and checks the replies.
func (lt *longRepliesTest) check(t *testing.T, parts []deliveredPart, out []string) {
	t.Helper()
	type reply struct {
		ref   int
		parts []deliveredPart
	}
	var replies []*reply
	byRef := map[int]*reply{}
	for _, p := range parts {
		if p.src != "13712345678" || p.dst != "10657500112" || p.payload != "-" || strings.ContainsRune(p.text, 0x1B) {
			t.Errorf("a part from %s to %s, message_payload %s, text %q: want from the handset to alice's number, "+
				"no message_payload, no escape left in the text:\n%s", p.src, p.dst, p.payload, p.text, p.line)
		}
		if !p.concat {
			if p.esm != 0 || p.udh != nil {
				t.Errorf("a reply whole with esm_class 0x%02x and a UDH % x, want neither:\n%s", p.esm, p.udh, p.line)
			}
			replies = append(replies, &reply{ref: -1, parts: []deliveredPart{p}})
			continue
		}
		switch {
		case lt.iei < 0 && (!p.sar || p.esm&0x40 != 0 || p.udh != nil):
			t.Errorf("sar: a part with esm_class 0x%02x, UDH % x, SAR TLVs %v; want the TLVs, no UDHI, no UDH:\n%s", p.esm, p.udh, p.sar, p.line)
		case lt.iei >= 0 && (p.sar || p.esm != 0x40 || p.udhIEI != lt.iei):
			t.Errorf("%s: a part with esm_class 0x%02x, concatenation IE 0x%02x, SAR TLVs %v; want 0x40, 0x%02x, none:\n%s",
				lt.mode, p.esm, p.udhIEI, p.sar, lt.iei, p.line)
		}
		rp, ok := byRef[p.ref]
		if !ok {
			rp = &reply{ref: p.ref}
			byRef[p.ref] = rp
			replies = append(replies, rp)
		}
		rp.parts = append(rp.parts, p)
	}
	var got []string
	for _, rp := range replies {
		n := len(rp.parts)
		slices.SortFunc(rp.parts, func(a, b deliveredPart) int { return a.seq - b.seq })
		var joined strings.Builder
		for i, p := range rp.parts {
			if rp.ref >= 0 && (p.total != n || p.seq != i+1) {
				t.Errorf("reference %d: %d parts came, this one says part %d of %d (want %d of %d):\n%s", rp.ref, n, p.seq, p.total, i+1, n, p.line)
			}
			joined.WriteString(p.text)
		}
		text := joined.String()
		got = append(got, text)
		i := slices.IndexFunc(lt.want, func(w handsetReply) bool { return w.text == text })
		if i < 0 {
			t.Errorf("%s's parts join as %q, none of the replies:\n%s", lt.lib, text, partLines(rp.parts))
			continue
		}
		w := lt.want[i]
		if n != w.parts || (w.parts == 1 && rp.ref >= 0) {
			t.Errorf("%q in %d parts (reference %d, -1 for none), want %d (a reply that fits one SMS: without a UDH or SAR TLVs):\n%s",
				text, n, rp.ref, w.parts, partLines(rp.parts))
		}
		for _, p := range rp.parts {
			if p.dataCoding != w.dataCoding {
				t.Errorf("a part of %q with data_coding %d, want %d:\n%s", text, p.dataCoding, w.dataCoding, p.line)
			}
		}
		if w.text == lt.gsm && n == 2 {
			// The splitter moved the escape to the second part with its 'e'.
			if s := rp.parts[1].text; !strings.HasPrefix(s, "€") || utf8.RuneCountInString(rp.parts[0].text) != lt.perPart-1 {
				t.Errorf("the GSM reply split as %q | %q, want '€' whole at the start of the second part", rp.parts[0].text, s)
			}
		}
	}
	wantTexts := make([]string, len(lt.want))
	for i, w := range lt.want {
		wantTexts[i] = w.text
	}
	slices.Sort(got)
	slices.Sort(wantTexts)
	if !slices.Equal(got, wantTexts) {
		t.Errorf("%s's parts join as %q, want %q:\n%s", lt.lib, got, wantTexts, strings.Join(out, "\n"))
	}
}

// partLines are the ESME's lines of parts, for a failure's message.
func partLines(parts []deliveredPart) string {
	var b strings.Builder
	for _, p := range parts {
		b.WriteString(p.line + "\n")
	}
	return b.String()
}
