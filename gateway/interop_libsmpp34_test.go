package gateway_test

import (
	"context"
	"encoding/hex"
	"errors"
	"maps"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/qxtd/qxtd/gateway"
	"github.com/qxtd/qxtd/queue"
	"github.com/qxtd/qxtd/segment"
	"github.com/qxtd/qxtd/smpp"
)

// libsmpp34 is the directory of the C programs written with osmocom's
// libsmpp34 (Debian's libsmpp34-dev), which the tests compile with cc.
const libsmpp34 = "testdata/libsmpp34"

// buildLibsmpp34 compiles testdata/libsmpp34/name.c into the test's
// temporary directory, warnings-clean under -Wall -Wextra, and returns
// the program's path. It fails (never skips) when the library, its
// headers or cc are missing, saying how to get them.
func buildLibsmpp34(t *testing.T, name string) string {
	t.Helper()
	if _, err := exec.LookPath("cc"); err != nil {
		t.Fatalf("cc: %v (apt-get install gcc libc6-dev libsmpp34-dev; .ci/run installs them)", err)
	}
	for _, f := range []string{"/usr/include/libsmpp34/smpp34.h", "/usr/include/libsmpp34/smpp34_structs.h"} {
		if _, err := os.Stat(f); err != nil {
			t.Fatalf("libsmpp34's headers: %v (apt-get install libsmpp34-dev; .ci/run installs it)", err)
		}
	}
	src, err := filepath.Abs(filepath.Join(libsmpp34, name+".c"))
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(t.TempDir(), name)
	out, err := exec.Command("cc", "-Wall", "-Wextra", "-Werror", "-O1", "-I/usr/include/libsmpp34",
		"-o", bin, src, "-lsmpp34").CombinedOutput()
	if err != nil {
		t.Fatalf("cc %s: %v (is libsmpp34-dev installed? apt-get install libsmpp34-dev; .ci/run installs it)\n%s", name, err, out)
	}
	return bin
}

// TestInteropLibsmpp34: an ESME written in C with osmocom's libsmpp34 (a
// fourth independent SMPP implementation; testdata/libsmpp34/esme.c)
// binds to qxtd as a transmitter and a receiver apart (two connections,
// one account), or as one transceiver. It sends enquire_link on each
// bind and, on the transmitter, a GSM text, a UCS-2 one, a long one it
// splits itself with a UDH (esm_class 0x40), one in message_payload and
// one to a number the account may not reach (refused with qxtd's code);
// every receipt reaches it once, on the receiver, with
// receipted_message_id, message_state and an Appendix B text of the same
// id; a handset's reply reaches it there too; query_sm answers DELIVERED
// and both binds unbind cleanly. The SMSC gets every text whole, signed,
// once; in the store each message is delivered, its receipt forwarded.
func TestInteropLibsmpp34(t *testing.T) {
	bin := buildLibsmpp34(t, "esme")
	t.Run("transmitter and receiver", func(t *testing.T) { testInteropLibsmpp34(t, bin, true) })
	t.Run("transceiver", func(t *testing.T) { testInteropLibsmpp34(t, bin, false) })
}

func testInteropLibsmpp34(t *testing.T, bin string, pair bool) {
	r, _ := twoWayRig(t, rigOpts{sim: smpp.SimOptions{DLRDelay: 5 * time.Millisecond}})
	host, port, err := net.SplitHostPort(r.addr)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	mode, tx, rx := "trx", "transceiver", "transceiver"
	if pair {
		mode, tx, rx = "pair", "transmitter", "receiver"
	}
	texts := []string{"gsm:hello from libsmpp34 " + mode, "ucs2:中文短信，来自 libsmpp34",
		"long:" + strings.Repeat("A long text that libsmpp34's ESME splits in two parts itself. ", 4),
		"payload:" + strings.Repeat("A text in the message payload TLV from libsmpp34. ", 5),
		// Another province's China Mobile number, which E2 may not reach.
		"refused:13800000000:outside the home province"}
	reply := "收到，谢谢 libsmpp34 " + mode
	es := startScript(t, ctx, ".", bin, append([]string{host, port, "bob", "secret2", "106575002", "13712345678",
		mode, "1"}, texts...)...)
	var out []string
	submitted := map[string]string{} // message id: its kind
	receipts := map[string]int{}
	var replies []string
	var query, refused string
	unbound := map[string]string{}
	enquired := map[string]string{}
	for line := range es.lines {
		out = append(out, line)
		f := strings.Fields(line)
		switch f[0] {
		case "bound":
			if len(f) == 1 {
				// qxtd counts the binds as their kinds (qxtd_esme_bound).
				for _, k := range []string{tx, rx} {
					if n := esmeBound(t, r, k); n != 1 {
						t.Errorf("qxtd counts %v %s binds, want 1", n, k)
					}
				}
				// A handset answers while the ESME's messages are on their way.
				go func() {
					if err := r.sim.InjectMO("13712345678", "106575002", reply); err != nil && !errors.Is(err, context.Canceled) {
						t.Errorf("inject the reply: %v", err)
					}
				}()
			}
		case "enquire_link_resp":
			enquired[f[1]] = f[2]
		case "submitted":
			if _, dup := submitted[f[2]]; dup {
				t.Errorf("message id %s given twice", f[2])
			}
			submitted[f[2]] = f[1]
		case "receipt":
			// receipt <bind> <receipted_message_id> <message_state> <id:> <stat:>
			if len(f) != 6 || f[1] != rx || f[2] != f[4] || f[3] != strconv.Itoa(int(smpp.StateDelivered)) || f[5] != "DELIVRD" {
				t.Errorf("receipt %q: want one on the %s with receipted_message_id, message_state %d and the text's id: alike, DELIVRD",
					line, rx, smpp.StateDelivered)
			}
			receipts[f[2]]++
		case "reply":
			// reply <bind> <source> <dest> <data_coding> <esm_class> <short_message> <message_payload>
			if len(f) != 8 || f[1] != rx || f[2] != "13712345678" || f[3] != "106575002" || f[5] != "0" {
				t.Errorf("reply %q: want one from 13712345678 to 106575002 on the %s", line, rx)
				continue
			}
			dc, _ := strconv.Atoi(f[4])
			sm, _ := hex.DecodeString(strings.Trim(f[6], "-"))
			pl, _ := hex.DecodeString(strings.Trim(f[7], "-"))
			text, _, err := segment.DecodeIncoming(uint8(dc), 0, sm, pl, false)
			if err != nil {
				t.Errorf("reply %q: %v", line, err)
			}
			replies = append(replies, text)
		case "refused":
			refused = line
		case "query":
			query = line
		case "unbound":
			unbound[f[1]] = f[2]
		}
	}
	if err := es.wait(); err != nil {
		t.Fatalf("libsmpp34 ESME: %v\nits output:\n%s", err, strings.Join(out, "\n"))
	}
	t.Logf("libsmpp34 ESME:\n%s", strings.Join(out, "\n"))
	waitFor(t, 10*time.Second, "the binds closed", func() bool { return esmeBound(t, r, tx) == 0 && esmeBound(t, r, rx) == 0 })
	if len(submitted) != 5 {
		t.Fatalf("%d message ids, want 5 (the long text in 2 parts)", len(submitted))
	}
	for id := range submitted {
		if receipts[id] != 1 {
			t.Errorf("the receipt of %s (%s) reached libsmpp34 %d times, want once", id, submitted[id], receipts[id])
		}
	}
	if len(receipts) != len(submitted) {
		t.Errorf("receipts for %v, messages %v", receipts, submitted)
	}
	if len(replies) != 1 || replies[0] != reply {
		t.Errorf("replies %q, want %q", replies, reply)
	}
	// Refused with qxtd's code (scope_national). libsmpp34 cannot unpack
	// it (a vendor-specific status is not in its list): the program reads
	// the header. Its length is printed for the record: qxtd writes an
	// empty message_id (17 octets), where SMPP 3.4 §4.4.2 returns no body
	// with an error, and libsmpp34 refuses a 17-octet one even with a
	// status it knows ("Error in PDU length 17!=16").
	if f := strings.Fields(refused); len(f) != 3 || f[1] != "0x00000401" {
		t.Errorf("the refused submit_sm: %q, want status 0x00000401", refused)
	}
	// query_sm of the first message: OK, DELIVERED, a final_date.
	if f := strings.Fields(query); len(f) != 5 || f[1] != firstID(out) || f[2] != "0x00000000" ||
		f[3] != strconv.Itoa(int(smpp.StateDelivered)) || len(f[4]) != 16 {
		t.Errorf("query_sm: %q, want the first id, status 0, state %d and a 16-character final_date", query, smpp.StateDelivered)
	}
	wantBinds := map[string]string{tx: "0x00000000", rx: "0x00000000"}
	if !maps.Equal(unbound, wantBinds) || !maps.Equal(enquired, wantBinds) {
		t.Errorf("enquire_link %v and unbind %v, want %v for both", enquired, unbound, wantBinds)
	}
	// In the store: each message (the long one's parts joined into one)
	// delivered in every segment, its receipt recorded as forwarded.
	for id := range submitted {
		storedDelivered(ctx, t, r, id)
	}
	// What the SMSC got: each text whole, signed, once, in UCS-2 (the
	// signature is Chinese).
	var want []string
	for _, kt := range texts {
		kind, text, _ := strings.Cut(kt, ":")
		if kind == "refused" {
			continue
		}
		want = append(want, "【乙公司】"+text)
	}
	got := simTexts(t, r)
	slices.Sort(want)
	slices.Sort(got)
	if !slices.Equal(got, want) {
		t.Errorf("the SMSC got %d texts:\n%s\nwant %d:\n%s", len(got), strings.Join(got, "\n"), len(want), strings.Join(want, "\n"))
	}
	for _, m := range r.sim.Received() {
		if m.DataCoding != 0x08 {
			t.Errorf("the SMSC got data_coding %#x, want UCS-2", m.DataCoding)
		}
	}
}

// storedDelivered waits until the message of the client's id (a part's
// id: the message it was joined into) is delivered in every segment and
// its receipt recorded as forwarded.
func storedDelivered(ctx context.Context, t *testing.T, r *rig, clientID string) {
	t.Helper()
	id, err := strconv.ParseUint(clientID, 10, 64)
	if err != nil {
		t.Fatalf("message id %q: %v", clientID, err)
	}
	if joined, err := r.store.AliasOf(id); err == nil {
		id = joined
	}
	for {
		m, err := r.store.Get(id)
		if err != nil {
			t.Fatal(err)
		}
		done := m.DLRForwarded
		for _, p := range m.Parts {
			done = done && p.State == queue.StateDelivered
		}
		if done {
			return
		}
		if ctx.Err() != nil {
			t.Fatalf("message %s (%d): receipt forwarded %v, parts %+v; want delivered and forwarded", clientID, id, m.DLRForwarded, m.Parts)
		}
		waitABit(ctx)
	}
}

// firstID is the message id of the ESME's first "submitted" line.
func firstID(lines []string) string {
	for _, l := range lines {
		if f := strings.Fields(l); len(f) == 3 && f[0] == "submitted" {
			return f[2]
		}
	}
	return ""
}

// TestInteropLibsmpp34Upstream: qxtd's upstream binds to an SMSC written
// in C with osmocom's libsmpp34 (testdata/libsmpp34/smsc.c: message ids of
// 16 hex digits, each receipt sent right behind its submit_sm_resp with an
// Appendix B text, receipted_message_id and message_state, a handset's
// reply in UCS-2, an enquire_link of its own on the bind). Every segment
// reaches the SMSC once and the texts join whole; every receipt comes
// back to the ESME as DELIVRD and qxtd answers each deliver_sm OK; the
// reply reaches the ESME; qxtd answers the enquire_link and unbinds
// cleanly when it stops: bound as one transceiver, and as a transmitter
// and a receiver (bind_mode transmitter_receiver), the receipts and the
// reply then coming on the receiver.
func TestInteropLibsmpp34Upstream(t *testing.T) {
	bin := buildLibsmpp34(t, "smsc")
	for _, tc := range []struct {
		name      string
		receivers int
		kinds     []string // qxtd's binds, the receiving one last
	}{
		{"transceiver", 0, []string{"transceiver"}},
		{"transmitter_receiver", 1, []string{"transmitter", "receiver"}},
	} {
		t.Run(tc.name, func(t *testing.T) { libsmpp34Upstream(t, bin, tc.receivers, tc.kinds) })
	}
}

func libsmpp34Upstream(t *testing.T, bin string, receivers int, kinds []string) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	smsc := startScript(t, ctx, ".", bin, "up", "uppw")
	port := smsc.listening()
	r, _ := twoWayRig(t, rigOpts{upstream: func(u *gateway.UpstreamConfig) {
		u.Addr, u.Binds, u.Receivers = "127.0.0.1:"+port, 1, receivers
	}})
	e, err := r.bind("bob", "secret2", smpp.BindTransceiver)
	if err != nil {
		t.Fatal(err)
	}
	hello := "hello libsmpp34"
	ids := submitThreeKinds(t, ctx, e, "106575002", "13712345678", hello)
	wantReceipts(t, e, ids, smpp.StateDelivered)
	mos := e.waitMOs(t, 1)
	if len(mos) != 1 || mos[0].Source != "13712345678" || mos[0].Dest != "106575002" || moText(t, mos[0]) != "好的，收到 libsmpp34" {
		t.Errorf("the ESME got the replies %+v, want one from 13712345678 to 106575002: 好的，收到 libsmpp34", mos)
	}
	r.stop() // qxtd unbinds: the SMSC ends
	var lines []string
	for l := smsc.next(); l != "closed"; l = smsc.next() {
		lines = append(lines, l)
	}
	if err := smsc.wait(); err != nil {
		t.Errorf("the libsmpp34 SMSC: %v", err)
	}
	t.Logf("the libsmpp34 SMSC:\n%s", strings.Join(lines, "\n"))
	got := map[string]int{}
	var frames []segment.Frame
	submitted := map[string]int{}
	for _, l := range lines {
		f := strings.Fields(l)
		switch {
		case f[0] == "submit" && len(f) == 7:
			// submit <id> <data_coding> <esm_class> <registered_delivery> <short_message> <message_payload>
			submitted[f[1]]++
			dc, _ := strconv.Atoi(f[2])
			esm, _ := strconv.Atoi(f[3])
			sm, _ := hex.DecodeString(strings.Trim(f[5], "-"))
			pl, _ := hex.DecodeString(strings.Trim(f[6], "-"))
			if dc != 8 || f[4] != "1" {
				t.Errorf("%q: want UCS-2 asking for a receipt", l)
			}
			fr := segment.Frame{ESMClass: uint8(esm), DataCoding: uint8(dc), ShortMessage: sm}
			if len(pl) > 0 {
				fr.TLVs = map[uint16][]byte{segment.TagMessagePayload: pl}
			}
			frames = append(frames, fr)
		case f[0] == "deliver_sm_resp" && len(f) == 5 && f[2] == "receipt":
			got["receipt "+f[3]+" "+f[4]]++
			if f[1] != kinds[len(kinds)-1] {
				t.Errorf("%q: a receipt answered on the %s bind", l, f[1])
			}
		default:
			got[l]++
		}
	}
	// Each bind, its enquire_link answered, its unbind; the reply
	// answered OK on the receiving bind; each receipt answered OK once.
	want := map[string]int{"deliver_sm_resp " + kinds[len(kinds)-1] + " reply 0x00000000": 1}
	for _, k := range kinds {
		want["bound up "+k+" 0x00000000"] = 1
		want["enquire_link_resp "+k+" 0x00000000"] = 1
		want["unbound "+k] = 1
	}
	for id := range submitted {
		want["receipt "+id+" 0x00000000"] = 1
	}
	if !maps.Equal(got, want) {
		t.Errorf("the SMSC saw %v, want %v", got, want)
	}
	// The signature is Chinese: every message goes out in UCS-2; the long
	// one (【乙公司】 and 168 characters) in 3 parts with a UDH. Each part
	// reached the SMSC once: 5 ids.
	if len(submitted) != 5 || len(frames) != 5 {
		t.Errorf("the SMSC gave %d ids for %d submit_sm, want 5", len(submitted), len(frames))
	}
	var texts []string
	var parts []segment.Frame
	for _, fr := range frames {
		if fr.ESMClass&0x40 != 0 {
			parts = append(parts, fr)
			continue
		}
		text, err := segment.Reassemble([]segment.Frame{fr}, segment.Options{})
		if err != nil {
			t.Fatal(err)
		}
		texts = append(texts, text)
	}
	long, err := segment.Reassemble(parts, segment.Options{})
	if err != nil {
		t.Fatalf("join the parts the SMSC got: %v", err)
	}
	texts = append(texts, long)
	wantTexts := []string{"【乙公司】" + hello, "【乙公司】中文短信", "【乙公司】" + strings.Repeat("a long text in parts ", 8)}
	slices.Sort(texts)
	slices.Sort(wantTexts)
	if !slices.Equal(texts, wantTexts) {
		t.Errorf("the SMSC got the texts %q, want %q", texts, wantTexts)
	}
}
