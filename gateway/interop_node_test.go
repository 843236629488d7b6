package gateway_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/fiorix/go-smpp/smpp/pdu/pdutlv"

	"github.com/qxtd/qxtd/gateway"
	"github.com/qxtd/qxtd/segment"
	"github.com/qxtd/qxtd/smpp"
)

// nodeSMPP is the directory of the node-smpp scripts; `make test` runs
// `npm ci` there first (the library is pinned in its package-lock.json).
const nodeSMPP = "testdata/nodesmpp"

// needNodeSMPP fails (never skips) when node or the installed library is
// missing, saying how to get them.
func needNodeSMPP(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("node"); err != nil {
		t.Fatalf("node: %v (apt-get install nodejs npm; .ci/run installs them)", err)
	}
	if _, err := os.Stat(nodeSMPP + "/node_modules/smpp/package.json"); err != nil {
		t.Fatalf("node-smpp is not installed: %v (run `npm ci --prefix gateway/testdata/nodesmpp`; make test does)", err)
	}
}

// simTexts reassembles every message the simulator received, as
// handsets would: frames grouped by destination and concatenation
// reference, each group read by segment.Reassemble.
func simTexts(t *testing.T, r *rig) []string {
	t.Helper()
	type key struct {
		dest string
		ref  int
	}
	groups := map[key][]segment.Frame{}
	var order []key
	for i, m := range r.sim.Received() {
		_, udh, err := segment.DecodeIncoming(m.DataCoding, m.ESMClass, m.ShortMessage, m.TLVs[segment.TagMessagePayload], false)
		if err != nil {
			t.Fatalf("the SMSC got a frame it cannot read: %v", err)
		}
		k := key{m.Dest, -1 - i} // a single message: a group of its own
		if udh != nil && udh.Concat && udh.Total > 1 {
			k.ref = int(udh.Ref)
		}
		if _, ok := groups[k]; !ok {
			order = append(order, k)
		}
		groups[k] = append(groups[k], segment.Frame{ESMClass: m.ESMClass, DataCoding: m.DataCoding, ShortMessage: m.ShortMessage, TLVs: m.TLVs})
	}
	var texts []string
	for _, k := range order {
		text, err := segment.Reassemble(groups[k], segment.Options{})
		if err != nil {
			t.Fatalf("reassemble what the SMSC got: %v", err)
		}
		texts = append(texts, text)
	}
	return texts
}

// TestInteropNodeSMPP: an ESME written with node-smpp (npm smpp, a third
// independent implementation, in JavaScript; testdata/nodesmpp/esme.js)
// binds as a transceiver and sends everything at once, as that library
// does (25 requests in flight): short texts in the data_coding it picks
// from the text (IA5 0x01, Latin-1 0x03, UCS-2 0x08), a long text it splits
// itself with a UDH, one in message_payload, a data_sm and a submit_multi
// to a number it may reach and one it may not. Every message reaches the
// SMSC with its text whole and the enterprise's signature, every receipt
// reaches the library with receipted_message_id and message_state, a
// handset's reply reaches it decoded, query_sm answers and the unbind is
// clean.
func TestInteropNodeSMPP(t *testing.T) {
	needNodeSMPP(t)
	t.Run("plain", func(t *testing.T) { testInteropNodeSMPP(t, false) })
	// Over smpp.tls_listen's kind of listener (ssmpp://, as the library
	// calls it), the same exchange.
	t.Run("tls", func(t *testing.T) { testInteropNodeSMPP(t, true) })
}

func testInteropNodeSMPP(t *testing.T, overTLS bool) {
	r, _ := twoWayRig(t, rigOpts{sim: smpp.SimOptions{DLRDelay: 5 * time.Millisecond}})
	addr, mode := r.addr, "plain"
	if overTLS {
		tl := tls.NewListener(listen(t), &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{selfSigned(t)}})
		go func() { _ = r.srv.Serve(tl) }() // the rig's server: closed with the rig
		addr, mode = tl.Addr().String(), "tls"
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
	defer cancel()
	// bob: enterprise E2, service number 106575002 (his source), whose
	// handsets' replies to that number reach him.
	es := startScript(t, ctx, nodeSMPP, "node", "esme.js", host, port, "bob", "secret2",
		"106575002", "13712345678", "13800000000", "2", mode)
	var out []string
	submitted := map[string]bool{}
	receipts := map[string]string{}
	var replies, binary, multi, query, unbound string
	// A binary reply in two parts (8-bit data to the WAP push port, in
	// the UDH and a destination_port TLV), 256 octets joined: to the ESME
	// in message_payload, its UDH first, the TLV after.
	wapPush := []byte{0x05, 0x04, 0x0B, 0x84, 0x23, 0xF0}
	octets := make([]byte, 256)
	for i := range octets {
		octets[i] = byte(i)
	}
	for line := range es.lines {
		out = append(out, line)
		f := strings.SplitN(line, " ", 4)
		switch f[0] {
		case "bound":
			// A handset answers while the ESME's messages are on their way.
			go func() {
				if err := r.sim.InjectMO("13712345678", "106575002", "收到，谢谢 node"); err != nil && !errors.Is(err, context.Canceled) {
					t.Errorf("inject the reply: %v", err)
				}
				for seq := byte(1); seq <= 2; seq++ {
					udh := append([]byte{11, 0x00, 0x03, 0x77, 2, seq}, wapPush...)
					sm := smpp.SM{SourceAddr: "13712345678", DestinationAddr: "106575002", ESMClass: 0x40, DataCoding: 0x04,
						ShortMessage: append(udh, octets[int(seq-1)*128:int(seq)*128]...),
						TLVs:         []smpp.TLVField{{Tag: pdutlv.TagDestinationPort, Value: []byte{0x0B, 0x84}}}}
					if err := r.sim.InjectDeliverSM(sm); err != nil && !errors.Is(err, context.Canceled) {
						t.Errorf("inject the binary reply's part %d: %v", seq, err)
					}
				}
			}()
		case "submitted", "data":
			submitted[f[1]] = true
		case "multi":
			multi = line
			submitted[f[1]] = true
		case "receipt":
			if len(f) == 4 {
				receipts[f[1]] = f[2] + " " + f[3]
			} else {
				receipts[f[1]] = line
			}
		case "reply":
			replies += line + "\n"
		case "binary":
			binary += line + "\n"
		case "query":
			query = line
		case "unbound":
			unbound = f[1]
		}
	}
	if err := es.wait(); err != nil {
		t.Fatalf("node-smpp ESME: %v\nits output:\n%s", err, strings.Join(out, "\n"))
	}
	if len(submitted) != 27 {
		t.Fatalf("node-smpp ESME: %d message ids, want 27 (20 short, Latin-1, UCS-2, 2 parts, payload, data_sm, submit_multi):\n%s",
			len(submitted), strings.Join(out, "\n"))
	}
	// submit_multi: one recipient taken, the other (another province's
	// China Mobile number) refused with qxtd's code, read by the library.
	if f := strings.Fields(multi); len(f) != 4 || f[2] != "1" || f[3] != "13800000000:0x00000401" {
		t.Errorf("submit_multi: %q, want one refused, 13800000000 with 0x00000401", multi)
	}
	delivered := strconv.Itoa(int(smpp.StateDelivered))
	for id := range submitted {
		rc, ok := receipts[id]
		if !ok {
			t.Errorf("no receipt reached node-smpp for %s", id)
			continue
		}
		if !strings.HasPrefix(rc, delivered+" id:"+id+" ") || !strings.Contains(rc, "stat:DELIVRD") {
			t.Errorf("receipt for %s as node-smpp read it: %q, want message_state %s and a DELIVRD text", id, rc, delivered)
		}
	}
	if len(receipts) != len(submitted) {
		t.Errorf("%d receipts for %d messages", len(receipts), len(submitted))
	}
	// The reply, UCS-2 from the simulator, as the library decodes it.
	if want := `reply 13712345678 106575002 8 "收到，谢谢 node"` + "\n"; replies != want {
		t.Errorf("replies node-smpp got:\n%swant\n%s", replies, want)
	}
	// The binary reply, joined, as the library read it from message_payload.
	if want := "binary 13712345678 106575002 4 " + hex.EncodeToString(wapPush) + " " + hex.EncodeToString(octets) + " -:2948\n"; binary != want {
		t.Errorf("binary replies node-smpp got:\n%swant\n%s", binary, want)
	}
	// query_sm: OK, DELIVERED (2), a final_date the library parsed.
	if f := strings.Fields(query); len(f) != 5 || f[2] != "0x00000000" || f[3] != delivered || !strings.HasPrefix(f[4], "20") {
		t.Errorf("query_sm: %q, want status 0, state %s and a final_date", query, delivered)
	}
	if unbound != "0x00000000" {
		t.Errorf("unbind: %q, want 0x00000000", unbound)
	}
	// What the SMSC got: each text whole, signed, in whichever coding
	// the signature needs (its Chinese: UCS-2).
	want := []string{"café crème à Noël", "中文短信，来自 node-smpp", "sent as data_sm", "to several",
		strings.Repeat("A text in message_payload, longer than one SMS could hold: ", 4),
		"A long text that node-smpp sends in two parts, split by the client itself with a UDH. Part 1." +
			"A long text that node-smpp sends in two parts, split by the client itself with a UDH. Part 2."}
	for i := range 20 {
		want = append(want, "hello from node-smpp "+strconv.Itoa(i))
	}
	got := simTexts(t, r)
	for i := range want {
		want[i] = "【乙公司】" + want[i]
	}
	slices.Sort(want)
	slices.Sort(got)
	if !slices.Equal(got, want) {
		t.Errorf("the SMSC got %d texts:\n%s\nwant %d:\n%s", len(got), strings.Join(got, "\n"), len(want), strings.Join(want, "\n"))
	}
}

// script is a peer program run for a test, read line by line.
type script struct {
	t      *testing.T
	ctx    context.Context
	cmd    *exec.Cmd
	lines  chan string
	stderr strings.Builder
	stdin  io.WriteCloser
}

// startScript runs name with args in dir until ctx ends; next reads its
// output a line at a time. Its stdin is a pipe left open until it ends:
// a program may take its closing as the test's end (as
// testdata/libsmpp34/parts.c does), which /dev/null would say at once.
func startScript(t *testing.T, ctx context.Context, dir, name string, args ...string) *script {
	t.Helper()
	s := &script{t: t, ctx: ctx, cmd: exec.CommandContext(ctx, name, args...), lines: make(chan string, 64)}
	s.cmd.Dir = dir
	stdout, err := s.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if s.stdin, err = s.cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	s.cmd.Stderr = &s.stderr
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			s.lines <- sc.Text()
		}
		close(s.lines)
	}()
	return s
}

// next is the script's next line; the test fails if it ends or says
// nothing before the test's deadline.
func (s *script) next() string {
	s.t.Helper()
	select {
	case l, ok := <-s.lines:
		if !ok {
			s.t.Fatalf("%s ended: %s", s.cmd.Path, s.stderr.String())
		}
		return l
	case <-s.ctx.Done():
		s.t.Fatalf("%s said nothing: %s", s.cmd.Path, s.stderr.String())
	}
	return ""
}

// listening is the port of the script's "listening <port>" line, which an
// SMSC script prints first.
func (s *script) listening() string {
	s.t.Helper()
	port, ok := strings.CutPrefix(s.next(), "listening ")
	if !ok {
		s.t.Fatalf("%s did not listen", s.cmd.Path)
	}
	return port
}

// wantUCS2Submits reads the SMSC script's lines of the three messages of
// submitThreeKinds: "submit <id> <data_coding> <esm_class>
// <registered_delivery> …", fields fields each (an id idLen long, 0 any).
// The signature being Chinese, each is UCS-2 and asks for a receipt; two go
// whole and the long one in 3 parts with a UDH.
func (s *script) wantUCS2Submits(t *testing.T, fields, idLen int) {
	t.Helper()
	var single, parts int
	for range 5 {
		f := strings.Fields(s.next())
		if len(f) != fields || f[0] != "submit" || (idLen > 0 && len(f[1]) != idLen) || f[2] != "8" || f[4] != "1" {
			t.Fatalf("the SMSC got %v: want a UCS-2 submit_sm asking for a receipt", f)
		}
		switch f[3] {
		case "0":
			single++
		case "64":
			parts++
		}
	}
	if single != 2 || parts != 3 {
		t.Errorf("the SMSC got %d single and %d concatenated parts, want 2 and 3", single, parts)
	}
}

// wait waits for the script's end; an error if it failed.
func (s *script) wait() error {
	if err := s.cmd.Wait(); err != nil {
		return fmt.Errorf("%v: %s", err, s.stderr.String())
	}
	return nil
}

// TestInteropNodeSMPPUpstream: qxtd's upstream binds to an SMSC written
// with node-smpp (testdata/nodesmpp/smsc.js): UUID message ids of 36
// characters, receipts sent at once (often before qxtd has recorded the
// submit_sm_resp), half of them in TLVs only with an empty text and half in
// Appendix B text only, and handsets' replies in UCS-2 and in two
// UDH parts of data_coding 0x01 as that library sends GSM (gsmUnderIA5).
// Every segment goes out, every receipt comes back to the ESME as DELIVRD,
// the replies reach it, the long one joined, and the unbind is clean:
// with qxtd's bind a transceiver, and with a transmitter and a receiver
// (bind_mode transmitter_receiver), the SMSC then sending the receipts and
// replies on the receiver.
func TestInteropNodeSMPPUpstream(t *testing.T) {
	needNodeSMPP(t)
	for _, tc := range []struct {
		name      string
		receivers int
		binds     []string // the SMSC's bind commands, sorted
	}{
		{"transceiver", 0, []string{"bind_transceiver"}},
		{"transmitter_receiver", 1, []string{"bind_receiver", "bind_transmitter"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			smsc := startScript(t, ctx, nodeSMPP, "node", "smsc.js", "up", "uppw")
			port := smsc.listening()
			r, _ := twoWayRig(t, rigOpts{upstream: func(u *gateway.UpstreamConfig) {
				u.Addr, u.Binds, u.Receivers = "127.0.0.1:"+port, 1, tc.receivers
			}})
			var binds []string
			for range tc.binds {
				l := smsc.next()
				if !strings.HasPrefix(l, "bound up ") {
					t.Fatalf("the SMSC said %q, want a bind of up", l)
				}
				binds = append(binds, strings.TrimPrefix(l, "bound up "))
			}
			if slices.Sort(binds); !slices.Equal(binds, tc.binds) {
				t.Fatalf("qxtd bound %q, want %q", binds, tc.binds)
			}
			e, err := r.bind("bob", "secret2", smpp.BindTransceiver)
			if err != nil {
				t.Fatal(err)
			}
			ids := submitThreeKinds(t, ctx, e, "106575002", "13712345678", "hello node-smpp")
			wantReceipts(t, e, ids, smpp.StateDelivered)
			// The signature is Chinese: every message goes out in UCS-2; the long
			// one (【乙公司】 and 168 characters) in 3 parts with a UDH.
			smsc.wantUCS2Submits(t, 5, 36)
			var got []string
			for _, m := range e.waitMOs(t, 2) {
				if m.Source != "13712345678" || m.Dest != "106575002" {
					t.Errorf("reply from %s to %s, want 13712345678 to 106575002", m.Source, m.Dest)
				}
				got = append(got, moText(t, m))
			}
			slices.Sort(got)
			want := []string{
				"A reply_long from me@home, sent by the handset in two parts: part 1. " +
					"A reply_long from me@home, sent by the handset in two parts: part 2. ",
				"好的，已收到 node-smpp",
			}
			if !slices.Equal(got, want) {
				t.Errorf("the ESME got the replies %q, want %q", got, want)
			}
			r.stop() // qxtd unbinds: the SMSC ends
			seen := map[string]int{}
			for range 2 * len(tc.binds) {
				seen[smsc.next()]++
			}
			if seen["unbound"] != len(tc.binds) || seen["closed"] != len(tc.binds) {
				t.Errorf("the SMSC said %v after qxtd stopped, want %d unbound and closed", seen, len(tc.binds))
			}
			if err := smsc.wait(); err != nil {
				t.Errorf("the node-smpp SMSC: %v", err)
			}
		})
	}
}

// TestInteropNodeSMPPUpstreamUnbinds: the node-smpp SMSC unbinds qxtd
// itself after the second submit_sm, as an SMSC does for its maintenance,
// refusing what comes after its unbind with ESME_RINVBNDSTS. qxtd answers
// the unbind with unbind_resp OK, binds again, sends the rest on the new
// bind, and every message's receipt reaches the ESME as DELIVRD.
func TestInteropNodeSMPPUpstreamUnbinds(t *testing.T) {
	needNodeSMPP(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	smsc := startScript(t, ctx, nodeSMPP, "node", "smsc.js", "up", "uppw", "2")
	port := smsc.listening()
	r, _ := twoWayRig(t, rigOpts{upstream: func(u *gateway.UpstreamConfig) {
		u.Addr, u.Binds = "127.0.0.1:"+port, 1
	}})
	e, err := r.bind("bob", "secret2", smpp.BindTransceiver)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for i := range 5 {
		id, err := e.submit(ctx, submitSM("106575002", "13712345678", "message "+strconv.Itoa(i)))
		if err != nil {
			t.Fatalf("submit %d: %v", i, err)
		}
		ids = append(ids, id)
	}
	wantReceipts(t, e, ids, smpp.StateDelivered)
	r.stop() // qxtd unbinds: the SMSC ends
	// What the SMSC saw, to its end: two binds, its unbind answered OK,
	// five messages taken, once each (one it refused after its unbind is
	// sent again on the new bind, and printed once taken).
	var binds, submits int
	var unbindResp string
	for l := smsc.next(); l != "unbound"; l = smsc.next() {
		switch f := strings.Fields(l); f[0] {
		case "bound":
			binds++
		case "submit":
			submits++
		case "unbind_resp":
			unbindResp = f[1]
		}
	}
	if binds != 2 || unbindResp != "0x00000000" || submits != 5 {
		t.Errorf("the SMSC saw %d binds, its unbind answered %q and %d messages; want 2, 0x00000000 and 5", binds, unbindResp, submits)
	}
	if err := smsc.wait(); err != nil {
		t.Errorf("the node-smpp SMSC: %v", err)
	}
}

// TestInteropNodeSMPPScheduled: scheduled messages as node-smpp writes
// their times (testdata/nodesmpp/schedule.js): an absolute
// schedule_delivery_time in UTC with "00+", a relative one the library
// pads to "000000010000000R" and a relative validity_period. Both are
// held for their hour (stored with that time, nothing at the SMSC), the
// validity is stored a day ahead, query_sm answers ENROUTE for the held
// ones, replace_sm changes the relative one's text, cancel_sm withdraws
// the absolute one (and answers OK when asked again, as a retry after a
// lost cancel_sm_resp would be), and the message
// without a schedule goes at once.
func TestInteropNodeSMPPScheduled(t *testing.T) {
	needNodeSMPP(t)
	r, _ := twoWayRig(t, rigOpts{sim: smpp.SimOptions{DLRDelay: 5 * time.Millisecond}})
	host, port, err := net.SplitHostPort(r.addr)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
	defer cancel()
	start := time.Now()
	sc := startScript(t, ctx, nodeSMPP, "node", "schedule.js", host, port, "bob", "secret2", "106575002", "13712345678")
	ids := map[string]uint64{}
	var out []string
	for line := range sc.lines {
		out = append(out, line)
		if f := strings.Fields(line); f[0] == "submitted" && len(f) == 3 {
			id, err := strconv.ParseUint(f[2], 10, 64)
			if err != nil {
				t.Fatalf("message id %q: %v", f[2], err)
			}
			ids[f[1]] = id
		}
	}
	if err := sc.wait(); err != nil {
		t.Fatalf("node-smpp ESME: %v\nits output:\n%s", err, strings.Join(out, "\n"))
	}
	enroute := strconv.Itoa(int(smpp.StateEnroute))
	want := []string{
		"query abs 0x00000000 " + enroute,
		"query rel 0x00000000 " + enroute,
		"replace 0x00000000",
		"cancel 0x00000000",
		"query abs 0x00000000 " + strconv.Itoa(int(smpp.StateDeleted)),
		"query rel 0x00000000 " + enroute,
		"cancel 0x00000000", // again: OK, as a retry after a lost answer wants
		"unbound 0x00000000",
	}
	got := strings.Join(out, "\n")
	for _, w := range want {
		if !strings.Contains(got, w) {
			t.Errorf("node-smpp's output has no %q:\n%s", w, got)
		}
	}
	if len(ids) != 3 {
		t.Fatalf("ids %v, want abs, rel and now", ids)
	}
	// Held an hour (the absolute time has tenths of a second, the library's
	// own rounding: a second's slack either way), valid a day.
	for name, want := range map[string]time.Duration{"abs": time.Hour, "rel": time.Hour} {
		m, err := r.store.Get(ids[name])
		if err != nil {
			t.Fatal(err)
		}
		if d := m.SendAt.Sub(start); d < want-2*time.Second || d > want+5*time.Second {
			t.Errorf("%s: held until %v, %v after the start; want about %v", name, m.SendAt, d, want)
		}
	}
	if m, err := r.store.Get(ids["rel"]); err != nil || !strings.HasSuffix(m.Text, "replaced text") {
		t.Errorf("rel after replace_sm: %+v, %v; want the text replaced", m, err)
	}
	if m, err := r.store.Get(ids["now"]); err != nil {
		t.Fatal(err)
	} else if d := m.ValidUntil.Sub(start); d < 24*time.Hour-2*time.Second || d > 24*time.Hour+5*time.Second {
		t.Errorf("now: valid until %v, %v after the start; want a day", m.ValidUntil, d)
	}
	// Only the message without a schedule reached the SMSC.
	texts := simTexts(t, r)
	if len(texts) != 1 || texts[0] != "【乙公司】with a validity" {
		t.Errorf("the SMSC got %q, want only the unscheduled message", texts)
	}
}
