package main

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/csv"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/fiorix/go-smpp/smpp/pdu"
	"github.com/fiorix/go-smpp/smpp/pdu/pdufield"
	"github.com/fiorix/go-smpp/smpp/pdu/pdutlv"

	"github.com/qxtd/qxtd/segment"
	"github.com/qxtd/qxtd/smpp"
)

// Upgrades in place: a store written by an older build of qxtd, opened by
// this one. testdata/upgrade/NAME.db.gz is a store an older build left
// when it was stopped, NAME.json what it held (upgradeStore). Both are
// written by TestMakeUpgradeStore (upgradegen_test.go, build tag
// upgradegen), which builds the older commit and drives it:
//
//	UPGRADEGEN_COMMIT=db3f5c0 UPGRADEGEN_STOP=sigterm \
//	    go test -tags upgradegen -run TestMakeUpgradeStore ./cmd/qxtd/
//
// TestUpgradeFromOlderStore starts this build on each of them and checks
// that everything in it is carried on (checkUpgrade).

// upgradeStore is what an older build left in a store (NAME.json).
type upgradeStore struct {
	Commit   string       `json:"commit"` // the build that wrote the store
	Stop     string       `json:"stop"`   // how it was stopped: sigterm or kill9
	Written  time.Time    `json:"written"`
	Messages []upgradeMsg `json:"messages"`
}

// upgradeMsg is one message an ESME submitted to the older build. Kind:
//   - done: sent, its receipt back and forwarded before the upgrade;
//   - sent: sent, waiting for its receipt at the upgrade (SMSCIDs);
//   - queued, long: waiting to be sent (the SMSC throttled everything);
//   - scheduled: scheduled 5 s ahead (Due): due while the older build is
//     stopped, or soon after the upgrade when checked at once;
//   - future: scheduled years ahead (replaced after the upgrade);
//   - split: split by the ESME (UDH), Before of its Parts submitted before
//     the upgrade, the rest after.
//
// A queued one and a split one are sent with priority_flag 1 (Priority).
type upgradeMsg struct {
	Kind    string    `json:"kind"`
	IDs     []string  `json:"ids"` // the older build's message_ids (one per part submitted for split)
	Dest    string    `json:"dest"`
	Text    string    `json:"text"` // what the ESME sent (the whole text for split)
	Parts   []string  `json:"parts,omitempty"`
	Before  int       `json:"before,omitempty"`
	Ref     uint8     `json:"ref,omitempty"`
	SMSCIDs []string  `json:"smsc_ids,omitempty"` // sent: the ids the SMSC gave its parts
	Source  string    `json:"source,omitempty"`   // sent: the source the SMSC saw
	Due     time.Time `json:"due,omitzero"`       // scheduled: its time
	// Priority is the priority_flag it was sent with (a split message's
	// every part): stored in records of version 2 since 2026-12-05.
	Priority uint8 `json:"priority,omitempty"`
}

const upgradeSignature = "【测试】"

// writeUpgradeConfig is writeConfig with a validity and a reassembly
// timeout of ten years and no retention, keys every build since the first
// knows: a store written months before the test runs must still hold
// messages to send, split messages waiting for their parts and finished
// messages, not their expiry.
func writeUpgradeConfig(t *testing.T, dir, simAddr string) string {
	t.Helper()
	cfg := writeConfig(t, dir, simAddr, "")
	replaceInConfig(t, cfg, "smpp: { listen: 127.0.0.1:0 }", "smpp: { listen: 127.0.0.1:0, reassembly_timeout: 87600h }")
	replaceInConfig(t, cfg, "store: { path: ", "store: { retention: 0s, path: ")
	replaceInConfig(t, cfg, "delivery: { ", "delivery: { validity: 87600h, ")
	return cfg
}

// submitUpg submits text to dst with a receipt requested: in
// short_message, or in message_payload if payload; schedule is
// schedule_delivery_time ("" for at once). udh, if not nil, makes it a
// part the ESME split (esm_class UDHI); priority is its priority_flag.
func submitUpg(ctx context.Context, c *smpp.Conn, dst, text string, payload bool, schedule string, udh []byte, priority uint8) (string, error) {
	p := pdu.NewSubmitSM(nil)
	f := p.Fields()
	_ = f.Set(pdufield.SourceAddr, "10690001")
	_ = f.Set(pdufield.DestinationAddr, dst)
	_ = f.Set(pdufield.RegisteredDelivery, uint8(1))
	_ = f.Set(pdufield.PriorityFlag, priority)
	body := []byte(text)
	if strings.ContainsFunc(text, func(r rune) bool { return r > 0x7e }) {
		_ = f.Set(pdufield.DataCoding, uint8(8))
		body = ucs2(text)
	}
	if schedule != "" {
		_ = f.Set(pdufield.ScheduleDeliveryTime, schedule)
	}
	if udh != nil {
		_ = f.Set(pdufield.ESMClass, uint8(0x40))
		body = append(append([]byte(nil), udh...), body...)
	}
	if payload {
		_ = f.Set(pdufield.ShortMessage, []byte{})
		_ = p.TLVFields().Set(pdutlv.TagMessagePayload, body)
	} else {
		_ = f.Set(pdufield.ShortMessage, body)
	}
	resp, err := c.Request(ctx, p)
	if err != nil {
		return "", err
	}
	return smpp.Str(resp, pdufield.MessageID), nil
}

// splitUDH is the 8-bit concatenation UDH of part seq of total.
func splitUDH(ref uint8, total, seq int) []byte {
	return []byte{0x05, 0x00, 0x03, ref, byte(total), byte(seq)}
}

// simTexts joins what the simulator received for dest, if every part of
// one message has arrived: the text and the number of submit_sm; ok is
// false while parts are missing.
func simText(sim *smpp.Simulator, dest string) (text string, n int, ok bool, err error) {
	var frames []segment.Frame
	total := 1
	for _, m := range sim.Received() {
		if m.Dest != dest {
			continue
		}
		frames = append(frames, segment.Frame{ESMClass: m.ESMClass, DataCoding: m.DataCoding, ShortMessage: m.ShortMessage, TLVs: m.TLVs})
		if m.ESMClass&0x40 != 0 {
			if info, _, err := segment.ParseUDH(m.ShortMessage); err == nil && info.Concat {
				total = int(info.Total)
			}
		}
	}
	if len(frames) < total || len(frames) == 0 {
		return "", len(frames), false, nil
	}
	text, err = segment.Reassemble(frames, segment.Options{})
	return text, len(frames), true, err
}

// readUpgradeStore reads NAME.json and writes NAME.db.gz, unzipped, as
// dir/qxtd.db.
func readUpgradeStore(t *testing.T, base, dir string) upgradeStore {
	t.Helper()
	var st upgradeStore
	b, err := os.ReadFile(base + ".json")
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &st); err != nil {
		t.Fatalf("%s.json: %v", base, err)
	}
	gz, err := os.ReadFile(base + ".db.gz")
	if err != nil {
		t.Fatal(err)
	}
	zr, err := gzip.NewReader(bytes.NewReader(gz))
	if err != nil {
		t.Fatalf("%s.db.gz: %v", base, err)
	}
	db, err := io.ReadAll(zr)
	if err != nil {
		t.Fatalf("%s.db.gz: %v", base, err)
	}
	if err := os.WriteFile(filepath.Join(dir, "qxtd.db"), db, 0o600); err != nil {
		t.Fatal(err)
	}
	return st
}

// TestUpgradeFromOlderStore starts this build on every store of
// testdata/upgrade, written by an older build, and checks that every
// message in it is carried on (checkUpgrade).
func TestUpgradeFromOlderStore(t *testing.T) {
	names, err := filepath.Glob(filepath.Join("testdata", "upgrade", "*.json"))
	if err != nil {
		t.Fatal(err)
	}
	if len(names) == 0 {
		t.Fatal("no store in testdata/upgrade")
	}
	for _, name := range names {
		base := strings.TrimSuffix(name, ".json")
		t.Run(filepath.Base(base), func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			st := readUpgradeStore(t, base, dir)
			checkUpgrade(t, dir, st)
		})
	}
}

// checkUpgrade starts this build on dir/qxtd.db, the store st describes,
// with an SMSC that answers and sends receipts, and checks that:
//   - it starts and logs nothing at error level;
//   - every message waiting to be sent reaches the SMSC once, as the ESME
//     sent it (signed, every part), a split message once the ESME sends
//     the parts it had not sent before the upgrade;
//   - the scheduled one due while the old build was stopped goes at once
//     (not before its time),
//     the one scheduled years ahead not, until replace_sm brings it
//     forward: then at its new time;
//   - the messages sent before, waiting for their receipts, are not sent
//     again, and their receipts (sent now by the SMSC under the ids it gave
//     then) are matched and forwarded to the ESME with the older build's
//     message_id, as are the receipts of everything sent now;
//   - query_sm answers every message_id of the older build, DELIVERED in
//     the end; and a new message gets an id the older build did not give;
//   - the billing export has every part, delivered, with the SMSC ids of
//     before the upgrade, and the bill of that month answers.
func checkUpgrade(t *testing.T, dir string, st upgradeStore) {
	t.Helper()
	sim, simAddr := startSim(t, smpp.SimOptions{DLRDelay: 50 * time.Millisecond})
	cfg := writeUpgradeConfig(t, dir, simAddr)
	d := startDaemon(t, cfg)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("this build's log on the store of %s:\n%s", st.Commit, d.log())
		}
	})
	sink := newSink()
	c := dialESME(t, d.smppAddr, sink.handler())
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	var (
		oldIDs   []string // every message_id the older build gave
		receipts []string // the ids whose receipt the ESME must get
		future   *upgradeMsg
		kinds    = map[string]int{}
	)
	for i := range st.Messages {
		m := &st.Messages[i]
		kinds[m.Kind]++
		oldIDs = append(oldIDs, m.IDs...)
		if m.Kind != "done" {
			receipts = append(receipts, m.IDs...)
		}
		if m.Kind == "future" {
			future = m
		}
	}
	for _, k := range []string{"done", "sent", "queued", "long", "scheduled", "future", "split"} {
		if kinds[k] == 0 {
			t.Fatalf("%s/%s: no message of kind %s", st.Commit, st.Stop, k)
		}
	}

	t.Logf("%s/%s: %v segments sent with priority waiting at the start (records of version 2)", st.Commit, st.Stop,
		metricSum(t, d, "qxtd_queue_priority_segments"))
	// Before anything changes: every old id is known, the one scheduled
	// years ahead is not final.
	for _, id := range oldIDs {
		if _, err := querySM(ctx, c, id); err != nil {
			t.Errorf("query_sm %s (of the older build): %v", id, err)
		}
	}
	if a, err := querySM(ctx, c, future.IDs[0]); err == nil && a.state != uint8(smpp.StateEnroute) && a.state != uint8(smpp.StateAccepted) && a.state != 0 {
		t.Errorf("the message scheduled years ahead is in state %d", a.state)
	}

	// The SMSC's receipts for what the older build sent: injected once an
	// upstream bind is up.
	for _, m := range st.Messages {
		if m.Kind != "sent" {
			continue
		}
		for _, sid := range m.SMSCIDs {
			waitCond(t, 20*time.Second, "an upstream bind to take receipts", func() bool {
				return sim.InjectReceipt(sid, m.Dest, m.Source) == nil
			})
		}
	}
	// The rest of the split messages.
	newIDs := map[string]bool{}
	for i := range st.Messages {
		m := &st.Messages[i]
		if m.Kind != "split" {
			continue
		}
		for seq := m.Before + 1; seq <= len(m.Parts); seq++ {
			id, err := submitUpg(ctx, c, m.Dest, m.Parts[seq-1], false, "", splitUDH(m.Ref, len(m.Parts), seq), m.Priority)
			if err != nil {
				t.Fatalf("part %d of %s: %v", seq, m.Dest, err)
			}
			receipts = append(receipts, id)
			newIDs[id] = true
		}
	}
	// A new message.
	id, err := submitUpg(ctx, c, "13900000999", "after the upgrade", false, "", nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	receipts = append(receipts, id)
	newIDs[id] = true
	for id := range newIDs {
		if slices.Contains(oldIDs, id) {
			t.Errorf("message_id %s given again: the older build gave it", id)
		}
	}

	// Everything waiting goes, as sent, except the one years ahead.
	want := map[string]string{"13900000999": upgradeSignature + "after the upgrade"}
	for _, m := range st.Messages {
		switch m.Kind {
		case "queued", "long", "scheduled", "split":
			want[m.Dest] = segment.Sign(m.Text, upgradeSignature, "")
		}
	}
	for deadline := time.Now().Add(30 * time.Second); ; {
		var missing []string
		for dest := range want {
			if _, _, ok, _ := simText(sim, dest); !ok {
				missing = append(missing, dest)
			}
		}
		if len(missing) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 30s not at the SMSC (every part): %v", missing)
		}
		time.Sleep(20 * time.Millisecond) // the simulator has no per-destination signal
	}
	for _, m := range st.Messages {
		if m.Kind != "scheduled" {
			continue
		}
		for _, r := range sim.Received() {
			if r.Dest == m.Dest && r.At.Before(m.Due.Add(-time.Second)) { // relative times are whole seconds
				t.Errorf("the scheduled message went at %v, due %v", r.At, m.Due)
			}
		}
	}
	for dest, text := range want {
		got, n, _, err := simText(sim, dest)
		if err != nil || got != text {
			t.Errorf("to %s the SMSC got %q (%d parts, %v), want %q", dest, got, n, err, text)
		}
	}

	// The one years ahead has not gone; brought forward, it goes at its
	// new time.
	if _, n, _, _ := simText(sim, future.Dest); n != 0 {
		t.Fatalf("the message scheduled years ahead went at once (%d parts)", n)
	}
	const ahead = 3 * time.Second
	replaced := time.Now()
	// replace_sm has no data_coding: the text is in the message's, UCS-2.
	rp := smpp.NewPDU(smpp.ReplaceSMID)
	_ = rp.Fields().Set(pdufield.MessageID, future.IDs[0])
	_ = rp.Fields().Set(pdufield.ScheduleDeliveryTime, "000000000003000R")
	_ = rp.Fields().Set(pdufield.ShortMessage, ucs2(future.Text+"（改）"))
	if _, err := c.Request(ctx, rp); err != nil {
		t.Fatalf("replace_sm of the older build's scheduled message: %v", err)
	}
	waitCond(t, 20*time.Second, "the replaced message at the SMSC", func() bool {
		_, _, ok, _ := simText(sim, future.Dest)
		return ok
	})
	for _, m := range sim.Received() {
		if m.Dest == future.Dest && m.At.Before(replaced.Add(ahead-time.Second)) { // relative times are whole seconds
			t.Errorf("the replaced message went %v after replace_sm, due %v after", m.At.Sub(replaced), ahead)
		}
	}
	if got, _, _, _ := simText(sim, future.Dest); got != segment.Sign(future.Text+"（改）", upgradeSignature, "") {
		t.Errorf("the replaced message reached the SMSC as %q", got)
	}

	// Receipts: for the messages sent before (matched by the SMSC's ids of
	// then) and for every one sent now.
	sink.waitAll(t, receipts, 30*time.Second)
	sink.mu.Lock()
	for _, id := range receipts {
		if s := sink.ids[id]; s != smpp.StateDelivered {
			t.Errorf("receipt of %s: state %v", id, s)
		}
	}
	sink.mu.Unlock()
	// What was sent before the upgrade is not sent again.
	for _, m := range st.Messages {
		if m.Kind != "sent" && m.Kind != "done" {
			continue
		}
		if _, n, _, _ := simText(sim, m.Dest); n != 0 {
			t.Errorf("the %s message to %s sent again after the upgrade (%d submit_sm)", m.Kind, m.Dest, n)
		}
	}
	for _, id := range oldIDs {
		a, err := querySM(ctx, c, id)
		if err != nil || a.state != uint8(smpp.StateDelivered) {
			t.Errorf("query_sm %s (of the older build) after its receipt: %+v, %v", id, a, err)
		}
	}
	for _, state := range []string{"accepted", "submitted"} {
		if n := metricSum(t, d, `qxtd_queue_segments{state="`+state+`"}`); n != 0 {
			t.Errorf("qxtd_queue_segments{state=%q} %v after every receipt came", state, n)
		}
	}

	// The billing export has every part sent before and after, delivered,
	// with the SMSC's ids of then; the bill of that month answers.
	shanghai := time.FixedZone("CST", 8*3600)
	month := st.Written.In(shanghai).Format("2006-01")
	code, body := postJSON(t, "GET", "http://"+d.httpAddr+"/admin/v1/export/dlr?from="+month+"-01&to=2100-01-01&enterprise=T1", "test-token", "")
	rows, err := csv.NewReader(strings.NewReader(body)).ReadAll()
	if code != http.StatusOK || err != nil || len(rows) < 1 {
		t.Fatalf("DLR export: %d %v: %s", code, err, body)
	}
	col := map[string]int{}
	for i, name := range rows[0] {
		col[name] = i
	}
	exported := map[string][][]string{}
	for _, r := range rows[1:] {
		exported[r[col["id"]]] = append(exported[r[col["id"]]], r)
	}
	for _, m := range st.Messages {
		if m.Kind == "split" { // exported under the id of the joined message
			continue
		}
		rs := exported[m.IDs[0]]
		var smsc []string
		for _, r := range rs {
			if r[col["state"]] != "delivered" || r[col["billed"]] != "true" {
				t.Errorf("DLR export of %s message %s: %v", m.Kind, m.IDs[0], r)
			}
			smsc = append(smsc, r[col["smsc_id"]])
		}
		if len(rs) == 0 {
			t.Errorf("DLR export: no row of %s message %s", m.Kind, m.IDs[0])
		}
		slices.Sort(smsc) // SMSCIDs are in the order they reached the SMSC
		if m.Kind == "sent" && !slices.Equal(smsc, slices.Sorted(slices.Values(m.SMSCIDs))) {
			t.Errorf("DLR export of message %s: SMSC ids %v, the SMSC gave %v", m.IDs[0], smsc, m.SMSCIDs)
		}
	}
	if code, body := postJSON(t, "GET", "http://"+d.httpAddr+"/admin/v1/bill?month="+month+"&enterprise=T1", "test-token", ""); code != http.StatusOK {
		t.Errorf("bill of %s: %d %s", month, code, body)
	}

	d.stop(t)
	for line := range strings.SplitSeq(d.log(), "\n") {
		if strings.Contains(line, `"level":"ERROR"`) {
			t.Errorf("logged at error level: %s", line)
		}
		if strings.Contains(line, `"level":"WARN"`) {
			t.Logf("warning: %s", line)
		}
	}
}
