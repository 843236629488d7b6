package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/csv"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fiorix/go-smpp/smpp/pdu"
	"github.com/fiorix/go-smpp/smpp/pdu/pdufield"
	"github.com/fiorix/go-smpp/smpp/pdu/pdutlv"

	"github.com/qxtd/qxtd/api"
	"github.com/qxtd/qxtd/batch"
	"github.com/qxtd/qxtd/queue"
	"github.com/qxtd/qxtd/segment"
	"github.com/qxtd/qxtd/smpp"
)

// Upgrades in place: a store written by an older build of qxtd, opened by
// this one. testdata/upgrade/NAME.db.gz is a store an older build left
// when it was stopped, NAME.json what it held (upgradeStore), and
// NAME.files.tar.gz, if there, what it left beside the store. They are
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

	// What the older build got besides SMPP messages (upgradeExtras),
	// none in stores written before 2026-12-06 (the generator of then):
	// the checks of each run only when the store has it.
	APIKeys   map[string]string `json:"api_keys,omitempty"` // system_id → the API key the older build issued
	HTTP      []upgradeHTTP     `json:"http,omitempty"`
	Jobs      []upgradeJob      `json:"jobs,omitempty"`
	Replies   []upgradeReply    `json:"replies,omitempty"`
	Reminders []upgradeReminder `json:"reminders,omitempty"`
	// ReplyUser and UserReplies: replies the older build kept for a user
	// whose long_replies is udh8, none in stores of builds without long
	// replies in parts, binary replies or replies joined from their parts
	// (2026-12-06) or written by the generator before it drove them
	// (2026-12-07): checked only when the store has them
	// (checkUserReplies).
	ReplyUser   *upgradeReplyUser  `json:"reply_user,omitempty"`
	UserReplies []upgradeUserReply `json:"user_replies,omitempty"`
	// Files are what the older build left beside qxtd.db (the batch
	// jobs' spool, qxtd.db.batches/…), paths relative to its directory,
	// in NAME.files.tar.gz: a store is the file and these.
	Files []string `json:"files,omitempty"`
}

// upgradeHTTP is one send over the HTTP API to the older build, queued at
// the upgrade (the SMSC throttled everything): Route is /v1/messages or
// /v1/messages/personalized, Key its Idempotency-Key ("" none), Body the
// request and Answer the older build's answer; Dests[i] got Texts[i]
// (unsigned) under IDs[i].
type upgradeHTTP struct {
	Account string   `json:"account"`
	Route   string   `json:"route"`
	Key     string   `json:"key,omitempty"`
	Body    string   `json:"body"`
	Answer  string   `json:"answer"`
	Dests   []string `json:"dests"`
	Texts   []string `json:"texts"`
	IDs     []string `json:"ids"`
}

// upgradeJob is a batch job (POST /v1/batches, a CSV of Dests[i],Texts[i])
// of Account: State "done" when it had ended before the stop, "running"
// when the stop cut it (Accepted: the rows it had accepted when last
// read before the stop, at least).
type upgradeJob struct {
	Account  string   `json:"account"`
	ID       string   `json:"id"`
	State    string   `json:"state"`
	Accepted int      `json:"accepted"`
	Dests    []string `json:"dests"`
	Texts    []string `json:"texts"`
}

// upgradeReply is a reply (MO) the SMSC delivered to the older build for
// the service number of enterprise T2 (upgradeEnterprise2): Forwarded when
// T2's bind had acknowledged it before the stop, else it waited for a
// bind (none was up at the stop).
type upgradeReply struct {
	From      string `json:"from"`
	To        string `json:"to"`
	Text      string `json:"text"`
	Forwarded bool   `json:"forwarded"`
}

// upgradeReplyUser is a user of T2 the older build's admin API created
// (T2 given ext_len 1 by it too), kept in its store only (not in the
// configuration): replies to To, T2's service number and the user's
// Extension, are the user's, and reach its SMPP binds as LongReplies says
// (udh8: a reply too long for one SMS in parts). It never bound to the
// older build.
type upgradeReplyUser struct {
	SystemID    string `json:"system_id"`
	Password    string `json:"password"`
	Extension   string `json:"extension"`
	LongReplies string `json:"long_replies"`
	To          string `json:"to"`
}

// upgradeUserReply is a reply the SMSC delivered to the older build for
// ReplyUser, waiting for the user's bind at the stop. Kind:
//   - long: a text too long for one SMS, in one deliver_sm
//     (message_payload);
//   - binary: Binary, octets of data_coding DataCoding (8-bit data), with
//     a destination_port TLV (DestPort);
//   - partial: sent by the SMSC in Parts (8-bit reference Ref), of which
//     the first Before came before the stop, kept as parts; the rest come
//     after the upgrade, and the new build joins them with those kept;
//   - joined: sent in Parts, all before the stop: joined by the older
//     build, not forwarded.
//
// Text is the whole text (all but binary); Delivered the deliver_sm that
// carry it to the user's bind: its parts (udh8), 1 when it fits one SMS.
type upgradeUserReply struct {
	Kind       string   `json:"kind"`
	From       string   `json:"from"`
	Text       string   `json:"text,omitempty"`
	Binary     []byte   `json:"binary,omitempty"`
	DataCoding uint8    `json:"data_coding,omitempty"`
	DestPort   uint16   `json:"dest_port,omitempty"`
	Parts      []string `json:"parts,omitempty"`
	Ref        uint8    `json:"ref,omitempty"`
	Before     int      `json:"before,omitempty"`
	Delivered  int      `json:"delivered"`
}

// upgradeMOPart is the deliver_sm of part seq of r (partial or joined) as
// the SMSC sends it: an 8-bit concatenation UDH, the part's text in GSM
// (unpacked) or UCS-2.
func upgradeMOPart(r upgradeUserReply, to string, seq int) smpp.SM {
	dc, body := segment.TextBody(r.Parts[seq-1])
	return smpp.SM{SourceAddr: r.From, DestinationAddr: to, ESMClass: 0x40, DataCoding: dc,
		ShortMessage: append(splitUDH(r.Ref, len(r.Parts), seq), body...)}
}

// upgradeReminder is a reminder (POST /v1/reminders) of Account: Freq
// "once" at Start, a few seconds after the stop, handed to the gateway
// before it (IDs, its occurrence's messages); or one far ahead, its first
// occurrence on Date (in week Week), pending.
type upgradeReminder struct {
	Account string    `json:"account"`
	ID      string    `json:"id"`
	Freq    string    `json:"freq"`
	Body    string    `json:"body"` // the request
	Text    string    `json:"text"`
	To      string    `json:"to"`
	Start   time.Time `json:"start"`
	Week    string    `json:"week"`
	Date    string    `json:"date"`
	IDs     []string  `json:"ids,omitempty"`
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
//
// With replies (a store with UserReplies) a reassembly timeout of ten
// years for the replies the SMSC split too, a key builds know since
// 2026-12-06: a reply whose parts did not all come before the stop must
// still wait for the rest, not be stored with parts missing at the start.
//
// With extras (a store with upgradeExtras), a second enterprise,
// upgradeEnterprise2, and its admin user esme2: a service number for
// replies, and 10 messages a second so that a batch job of it spans the
// older build's stop. T1 keeps sending its sources as given (a service
// number would refuse the ESME's 10690001).
func writeUpgradeConfig(t *testing.T, dir, simAddr string, extras, replies bool) string {
	t.Helper()
	extra := ""
	if extras {
		extra = "  - system_id: esme2\n    password: secret2\n    enterprise: T2\n    admin: true\n"
	}
	cfg := writeConfig(t, dir, simAddr, extra)
	moTimeout := ""
	if replies {
		moTimeout = ", mo_reassembly_timeout: 87600h"
	}
	replaceInConfig(t, cfg, "smpp: { listen: 127.0.0.1:0 }", "smpp: { listen: 127.0.0.1:0, reassembly_timeout: 87600h"+moTimeout+" }")
	replaceInConfig(t, cfg, "store: { path: ", "store: { retention: 0s, path: ")
	replaceInConfig(t, cfg, "delivery: { ", "delivery: { validity: 87600h, ")
	if extras {
		replaceInConfig(t, cfg, "\naccounts:\n", "\n"+upgradeEnterprise2+"accounts:\n")
	}
	return cfg
}

// upgradeEnterprise2 is T2 of writeUpgradeConfig's extras.
const (
	upgradeEnterprise2 = `  - code: T2
    signature: "【回复】"
    package: 12
    national: true
    offnet: true
    no_whitelist: true
    tps: 10
    service_number: "1065902"
`
	upgradeServiceNumber = "1065902"
	upgradeSignature2    = "【回复】"
)

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
	restoreUpgradeFiles(t, base, dir, st.Files)
	return st
}

// restoreUpgradeFiles writes what NAME.files.tar.gz holds into dir and
// checks that every one of files, what the older build left beside its
// store, is there: a store without them is not what the older build left
// (its batch job could not resume). Nothing without files, and then no
// archive may be there either.
func restoreUpgradeFiles(t *testing.T, base, dir string, files []string) {
	t.Helper()
	name := base + ".files.tar.gz"
	gz, err := os.ReadFile(name)
	if len(files) == 0 {
		if err == nil {
			t.Fatalf("%s is there but %s.json lists no files", name, base)
		}
		return
	}
	if err != nil {
		t.Fatalf("%s.json lists %d files beside the store: %v", base, len(files), err)
	}
	zr, err := gzip.NewReader(bytes.NewReader(gz))
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	tr := tar.NewReader(zr)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		rel := filepath.Clean(filepath.FromSlash(h.Name))
		if !filepath.IsLocal(rel) {
			t.Fatalf("%s: %q is not beside the store", name, h.Name)
		}
		path := filepath.Join(dir, rel)
		switch h.Typeflag {
		case tar.TypeDir:
			err = os.MkdirAll(path, 0o700)
		case tar.TypeReg:
			var b []byte
			if b, err = io.ReadAll(tr); err == nil {
				if err = os.MkdirAll(filepath.Dir(path), 0o700); err == nil {
					err = os.WriteFile(path, b, os.FileMode(h.Mode)&0o777)
				}
			}
		default:
			err = fmt.Errorf("type %c", h.Typeflag)
		}
		if err != nil {
			t.Fatalf("%s: %s: %v", name, h.Name, err)
		}
	}
	for _, f := range files {
		if _, err := os.Stat(filepath.Join(dir, filepath.FromSlash(f))); err != nil {
			t.Fatalf("%s: %s, left by the older build, not restored: %v", name, f, err)
		}
	}
}

// hasExtras says whether the store holds anything besides SMPP messages.
func (st *upgradeStore) hasExtras() bool {
	return len(st.HTTP)+len(st.Jobs)+len(st.Replies)+len(st.UserReplies)+len(st.Reminders) > 0
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
//     before the upgrade, and the bill of that month answers;
//   - what the older build got besides SMPP messages, if the store has
//     any, is carried on (checkUpgradeExtras).
func checkUpgrade(t *testing.T, dir string, st upgradeStore) {
	t.Helper()
	checkStoredKeys(t, dir, st)
	sim, simAddr := startSim(t, smpp.SimOptions{DLRDelay: 50 * time.Millisecond})
	cfg := writeUpgradeConfig(t, dir, simAddr, st.hasExtras(), st.ReplyUser != nil)
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
	if st.hasExtras() {
		checkUpgradeExtras(t, dir, d, sim, st)
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

// upgradeSigOf is the signature of the messages of an account of
// writeUpgradeConfig.
func upgradeSigOf(account string) string {
	if account == "esme2" {
		return upgradeSignature2
	}
	return upgradeSignature
}

// httpUpg sends body to url with the API key key and, unless idem is "",
// the Idempotency-Key idem: the status, the body and the headers.
func httpUpg(t *testing.T, method, url, key, idem, contentType, body string) (int, string, http.Header) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	req.Header.Set("Authorization", "Bearer "+key)
	if idem != "" {
		req.Header.Set("Idempotency-Key", idem)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: reading the answer: %v", method, url, err)
	}
	return resp.StatusCode, string(b), resp.Header
}

// getUpgJSON GETs url with the API key key into v: the status and the body.
func getUpgJSON(t *testing.T, url, key string, v any) (int, string) {
	t.Helper()
	code, body, _ := httpUpg(t, http.MethodGet, url, key, "", "", "")
	if code == http.StatusOK {
		if err := json.Unmarshal([]byte(body), v); err != nil {
			t.Fatalf("GET %s: %v: %s", url, err, body)
		}
	}
	return code, body
}

// upgradeJobProgress is what GET /v1/batches/{id} says of a job.
type upgradeJobProgress struct {
	State                     string
	RowsRead                  int `json:"rows_read"`
	Accepted, Refused, Unsent int
	Reason                    string
}

// upgradeInbox is GET /v1/inbox.
type upgradeInbox struct {
	Replies []struct {
		From, To, Text, Account string
		Forwarded               bool
		PartsMissing            int `json:"parts_missing"`
		// A binary reply's octets (hex) and data_coding.
		Binary     string
		DataCoding *int `json:"data_coding"`
	}
}

// upgradeWeek is GET /v1/reminders?week=.
type upgradeWeek struct {
	Occurrences []struct {
		Reminder, Date, State string
		MessageIDs            []string `json:"message_ids"`
	}
}

// moSink binds as an ESME and counts the replies (deliver_sm that are not
// receipts) forwarded to it, by the handset that sent them.
type moSink struct {
	mu   sync.Mutex
	from map[string]int
}

func newMOSink() *moSink { return &moSink{from: map[string]int{}} }

func (s *moSink) handler() smpp.Handler {
	return smpp.HandlerFunc(func(_ context.Context, _ *smpp.Conn, p pdu.Body) pdu.Body {
		if _, err := smpp.ParseReceipt(p); err != nil {
			s.mu.Lock()
			s.from[smpp.Str(p, pdufield.SourceAddr)]++
			s.mu.Unlock()
		}
		return pdu.NewDeliverSMResp()
	})
}

func (s *moSink) count(from string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.from[from]
}

// userReplySink binds as the store's ReplyUser and keeps every reply
// (deliver_sm that is not a receipt) as an ESME reading short_message
// and the TLVs sees it, by the handset that sent it, in the order they
// came on the wire (by sequence number: its handlers run side by side).
type userReplySink struct {
	mu  sync.Mutex
	got map[string]map[uint32]segment.Incoming
}

func (s *userReplySink) handler() smpp.Handler {
	return smpp.HandlerFunc(func(_ context.Context, _ *smpp.Conn, p pdu.Body) pdu.Body {
		if _, err := smpp.ParseReceipt(p); err == nil {
			return pdu.NewDeliverSMResp()
		}
		in := segment.Incoming{DataCoding: smpp.Byte(p, pdufield.DataCoding), ESMClass: smpp.Byte(p, pdufield.ESMClass),
			ShortMessage: smpp.UserData(p), Payload: smpp.TLV(p, pdutlv.TagMessagePayload),
			SARRef: smpp.TLV(p, pdutlv.TagSarMsgRefNum), SARTotal: smpp.TLV(p, pdutlv.TagSarTotalSegments), SARSeq: smpp.TLV(p, pdutlv.TagSarSegmentSeqnum),
			DestPort: smpp.TLV(p, pdutlv.TagDestinationPort), KeepOctets: true}
		from := smpp.Str(p, pdufield.SourceAddr)
		s.mu.Lock()
		if s.got[from] == nil {
			s.got[from] = map[uint32]segment.Incoming{}
		}
		s.got[from][p.Header().Seq] = in
		s.mu.Unlock()
		return pdu.NewDeliverSMResp()
	})
}

// of is what came from the handset from, in the order it came.
func (s *userReplySink) of(from string) []segment.Incoming {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []segment.Incoming
	for _, seq := range slices.Sorted(maps.Keys(s.got[from])) {
		out = append(out, s.got[from][seq])
	}
	return out
}

// checkUserReplies binds as the user the older build's replies wait for
// (st.ReplyUser; nil, nothing done, when the store has none) and waits
// until they reached it: those whole at the upgrade first, while the one
// whose parts had not all come does not come; then its other parts,
// injected now, complete it and it comes too. What came is checked once
// the inbox lists every reply forwarded (userReplySink.inboxed).
func checkUserReplies(t *testing.T, d *proc, sim *smpp.Simulator, st upgradeStore) *userReplySink {
	t.Helper()
	u := st.ReplyUser
	if u == nil {
		return nil
	}
	s := &userReplySink{got: map[string]map[uint32]segment.Incoming{}}
	dialAs(t, d.smppAddr, u.SystemID, u.Password, s.handler())
	// Forwarded once the user's bind answered every deliver_sm of it,
	// which the sink took before: what it holds then is what came.
	inbox := func() upgradeInbox {
		var in upgradeInbox
		if code, body := getUpgJSON(t, "http://"+d.httpAddr+"/v1/inbox?limit=100", st.APIKeys["esme2"], &in); code != http.StatusOK {
			t.Fatalf("inbox after the upgrade: %d %s", code, body)
		}
		return in
	}
	forwarded := func(partial bool) func() bool {
		return func() bool {
			n, in := 0, inbox()
			for _, r := range st.UserReplies {
				for _, got := range in.Replies {
					if got.From == r.From && got.Forwarded && (partial || r.Kind != "partial") {
						n++
					}
				}
				if !partial && r.Kind == "partial" {
					n++
				}
			}
			return n == len(st.UserReplies)
		}
	}
	waitCond(t, 20*time.Second, "the user's replies whole at the upgrade forwarded to its bind", forwarded(false))
	for _, r := range st.UserReplies {
		if r.Kind != "partial" {
			continue
		}
		if n := len(s.of(r.From)); n != 0 {
			t.Errorf("the reply of %s, %d of its %d parts come before the upgrade, reached the user's bind (%d deliver_sm) before the rest came",
				r.From, r.Before, len(r.Parts), n)
		}
		for _, got := range inbox().Replies {
			if got.From == r.From {
				t.Errorf("the reply of %s, %d of its %d parts come before the upgrade, is in the inbox before the rest came: %+v", r.From, r.Before, len(r.Parts), got)
			}
		}
		for seq := r.Before + 1; seq <= len(r.Parts); seq++ {
			waitCond(t, 20*time.Second, "an upstream bind to take a reply's part", func() bool {
				return sim.InjectDeliverSM(upgradeMOPart(r, u.To, seq)) == nil
			})
		}
	}
	waitCond(t, 20*time.Second, "the reply completed after the upgrade forwarded to the user's bind", forwarded(true))
	return s
}

// inboxed checks, once the inbox (in) lists every reply forwarded, so
// that nothing more is to come, what reached the user's bind: every reply
// once; a long one in parts as its long_replies (udh8) says — a
// concatenation UDH of IE 0x00, one reference, parts 1 to n of n, in
// short_message only — joined to its text; one that fits one SMS whole;
// the binary one whole, its data_coding, octets and destination_port as
// they came. And the inbox's line of each: once, to the user's number,
// the user's, forwarded, with no part missing, its text or octets.
func (s *userReplySink) inboxed(t *testing.T, st upgradeStore, in upgradeInbox) {
	t.Helper()
	for _, r := range st.UserReplies {
		s.check(t, r)
		n := 0
		for _, got := range in.Replies {
			if got.From != r.From {
				continue
			}
			n++
			ok := got.To == st.ReplyUser.To && got.Account == st.ReplyUser.SystemID && got.Forwarded && got.PartsMissing == 0
			if r.Binary != nil {
				ok = ok && got.Text == "" && got.Binary == hex.EncodeToString(r.Binary) && got.DataCoding != nil && *got.DataCoding == int(r.DataCoding)
			} else {
				ok = ok && got.Text == r.Text
			}
			if !ok {
				t.Errorf("the inbox lists the %s reply of %s as %+v", r.Kind, r.From, got)
			}
		}
		if n != 1 {
			t.Errorf("the inbox lists the %s reply of %s %d times, want once", r.Kind, r.From, n)
		}
	}
}

// check checks reply r as the user's bind got it (inboxed).
func (s *userReplySink) check(t *testing.T, r upgradeUserReply) {
	t.Helper()
	ins := s.of(r.From)
	if len(ins) != r.Delivered {
		var got []string
		for _, in := range ins {
			got = append(got, fmt.Sprintf("data_coding 0x%02x esm_class 0x%02x short_message of %d octets (% .8x…) message_payload of %d",
				in.DataCoding, in.ESMClass, len(in.ShortMessage), in.ShortMessage, len(in.Payload)))
		}
		t.Errorf("the %s reply of %s reached the user's bind in %d deliver_sm, want %d: %q", r.Kind, r.From, len(ins), r.Delivered, got)
		return
	}
	if r.Binary != nil {
		in, port := ins[0], []byte{byte(r.DestPort >> 8), byte(r.DestPort)}
		if in.DataCoding != r.DataCoding || in.ESMClass&0x40 != 0 || !bytes.Equal(in.ShortMessage, r.Binary) || len(in.Payload) != 0 || !bytes.Equal(in.DestPort, port) {
			t.Errorf("the binary reply of %s reached the user's bind as data_coding 0x%02x, esm_class 0x%02x, short_message % x, message_payload % x, destination_port % x; want 0x%02x, no UDH, % x, none, % x",
				r.From, in.DataCoding, in.ESMClass, in.ShortMessage, in.Payload, in.DestPort, r.DataCoding, r.Binary, port)
		}
		return
	}
	frags := make([]*segment.Fragment, len(ins))
	for i, in := range ins {
		um := in.ShortMessage
		var whole, part bool
		if r.Delivered == 1 {
			whole = in.ESMClass&0x40 == 0
		} else {
			part = in.ESMClass&0x40 != 0 && len(um) >= 6 && bytes.Equal(um[:3], []byte{5, 0x00, 3}) &&
				um[3] == ins[0].ShortMessage[3] && int(um[4]) == r.Delivered && int(um[5]) == i+1
		}
		if !whole && !part || len(in.Payload) != 0 || len(in.SARRef) != 0 {
			t.Errorf("deliver_sm %d of %d of the %s reply of %s: esm_class 0x%02x, short_message % x, message_payload of %d octets, sar_msg_ref_num % x; want %s",
				i+1, len(ins), r.Kind, r.From, in.ESMClass, um, len(in.Payload), in.SARRef,
				map[bool]string{true: "it whole in short_message", false: "a UDH 05 00 03 of one reference, this part's number and the count"}[r.Delivered == 1])
			return
		}
		f, err := segment.ParseIncoming(in, false)
		if err != nil {
			t.Errorf("deliver_sm %d of the %s reply of %s: %v", i+1, r.Kind, r.From, err)
			return
		}
		frags[i] = &f
	}
	if text, err := segment.JoinText(frags); err != nil || text != r.Text {
		t.Errorf("the %s reply of %s reached the user's bind as %q (%v), want %q", r.Kind, r.From, text, err, r.Text)
	}
}

// checkUpgradeExtras checks, on this build started on the store (d), what
// the older build got besides SMPP messages (st's extras; each only when
// the store has it):
//   - the API keys it issued still authenticate;
//   - HTTP sends: a retry with the Idempotency-Key of a send answers the
//     older build's answer byte for byte, replayed, and sends nothing,
//     while the store is younger than the keys' 24 h (README, Idempotency
//     keys; an older store's keys are forgotten by design);
//   - batch jobs: the one the stop cut resumes and ends done with every
//     row read and accepted once, its spooled file removed; the finished
//     one reads done while younger than a day (batch.JobKeep), else is
//     forgotten (404), as a finished job is;
//   - replies: those waiting at the upgrade reach T2's bind once it binds,
//     those forwarded before do not come again, and the inbox lists them
//     all, forwarded; those of the user whose long_replies is udh8 reach
//     its bind, once, as it takes them, a reply whose parts had not all
//     come once the rest come (checkUserReplies);
//   - reminders: each is still there; the one far ahead (some 300 days
//     after the store was written) lists its occurrence, pending until
//     its day nears, and is deleted; the one-off lists its messages and
//     they go;
//   - every message of these (HTTP sends, job rows, the reminder) reaches
//     the SMSC once, signed, and ends delivered.
func checkUpgradeExtras(t *testing.T, dir string, d *proc, sim *smpp.Simulator, st upgradeStore) {
	base := "http://" + d.httpAddr
	age := time.Since(st.Written)
	for acct, key := range st.APIKeys {
		if code, body, _ := httpUpg(t, http.MethodGet, base+"/v1/me", key, "", "", ""); code != http.StatusOK {
			t.Errorf("the API key the older build issued %s: GET /v1/me %d %s", acct, code, body)
		}
	}
	want := map[string]string{} // destination → the text the SMSC must get, once
	type owned struct{ account, id string }
	var delivered []owned // messages that must end delivered

	for _, h := range st.HTTP {
		for i, dst := range h.Dests {
			want[dst] = segment.Sign(h.Texts[i], upgradeSigOf(h.Account), "")
			delivered = append(delivered, owned{h.Account, h.IDs[i]})
		}
		if h.Key == "" {
			continue
		}
		if age > api.IdempotencyTTL-10*time.Minute {
			t.Logf("Idempotency-Key %s: the store is %v old, the keys are kept 24 h: not replayed (a retry now sends again, by design)", h.Key, age.Round(time.Hour))
			continue
		}
		code, body, hdr := httpUpg(t, http.MethodPost, base+h.Route, st.APIKeys[h.Account], h.Key, "application/json", h.Body)
		if code != http.StatusOK || body != h.Answer || hdr.Get("Idempotent-Replayed") != "true" {
			t.Errorf("retry of %s with Idempotency-Key %s after the upgrade: %d %s (replayed %q), want the older build's answer %s",
				h.Route, h.Key, code, body, hdr.Get("Idempotent-Replayed"), h.Answer)
		}
	}

	for _, j := range st.Jobs {
		key := st.APIKeys[j.Account]
		for i, dst := range j.Dests {
			want[dst] = segment.Sign(j.Texts[i], upgradeSigOf(j.Account), "")
		}
		url := base + "/v1/batches/" + j.ID
		var p upgradeJobProgress
		if j.State == "done" && age > batch.JobKeep-10*time.Minute {
			// Kept a day after its end, then forgotten: not an error.
			// (Near the day, either: st.Written is a little before the end.)
			if code, body := getUpgJSON(t, url, key, &p); code != http.StatusNotFound && age > batch.JobKeep+10*time.Minute {
				t.Errorf("job %s, done %v before: %d %s, want 404 (finished jobs are kept a day)", j.ID, age.Round(time.Hour), code, body)
			}
			continue
		}
		waitCond(t, 30*time.Second, "job "+j.ID+" ("+j.State+" at the stop) ended", func() bool {
			code, body := getUpgJSON(t, url, key, &p)
			if code != http.StatusOK {
				t.Fatalf("job %s (%s at the stop) after the upgrade: %d %s", j.ID, j.State, code, body)
			}
			return p.State != "running"
		})
		if n := len(j.Dests); p.State != "done" || p.RowsRead != n || p.Accepted != n || p.Refused != 0 || p.Unsent != 0 {
			t.Errorf("job %s (%s at the stop, %d rows accepted): %+v, want done with its %d rows read and accepted once", j.ID, j.State, j.Accepted, p, n)
		}
	}
	if len(st.Jobs) > 0 {
		// A job's file goes once its end is stored.
		waitCond(t, 10*time.Second, "the jobs' spooled files removed", func() bool {
			left, _ := filepath.Glob(filepath.Join(dir, "qxtd.db.batches", "qxtd-batch-*"))
			return len(left) == 0
		})
	}

	if len(st.Replies) > 0 {
		mo := newMOSink()
		dialAs(t, d.smppAddr, "esme2", "secret2", mo.handler())
		waitCond(t, 20*time.Second, "the replies waiting at the upgrade forwarded to T2's bind", func() bool {
			for _, r := range st.Replies {
				if !r.Forwarded && mo.count(r.From) == 0 {
					return false
				}
			}
			return true
		})
		// The user's bind comes after T2's replies went to T2's: they
		// go to any bind of T2, the user's replies to the user's only.
		user := checkUserReplies(t, d, sim, st)
		var in upgradeInbox
		waitCond(t, 10*time.Second, "the inbox listing every reply forwarded", func() bool {
			if code, body := getUpgJSON(t, base+"/v1/inbox?limit=100", st.APIKeys["esme2"], &in); code != http.StatusOK {
				t.Fatalf("inbox after the upgrade: %d %s", code, body)
			}
			n := 0
			for _, got := range in.Replies {
				n += boolInt(got.Forwarded)
			}
			return n >= len(st.Replies)+len(st.UserReplies)
		})
		if user != nil {
			user.inboxed(t, st, in)
		}
		for _, r := range st.Replies {
			n := 0
			for _, got := range in.Replies {
				if got.From == r.From && got.Text == r.Text && got.To == r.To && got.Forwarded {
					n++
				}
			}
			if n != 1 {
				t.Errorf("the inbox lists the reply of %s %q to %s %d times forwarded, want once: %+v", r.From, r.Text, r.To, n, in.Replies)
			}
			if k := mo.count(r.From); k != boolInt(!r.Forwarded) {
				t.Errorf("the reply of %s (forwarded before the upgrade: %v) reached T2's bind %d times after it", r.From, r.Forwarded, k)
			}
		}
		if len(in.Replies) != len(st.Replies)+len(st.UserReplies) {
			t.Errorf("the inbox lists %d replies, the older build got %d (and %d of its user's): %+v", len(in.Replies), len(st.Replies), len(st.UserReplies), in.Replies)
		}
	}

	for _, r := range st.Reminders {
		key := st.APIKeys[r.Account]
		var series struct{ ID, Text, Freq string }
		if code, body := getUpgJSON(t, base+"/v1/reminders/"+r.ID, key, &series); code != http.StatusOK || series.Text != r.Text || series.Freq != r.Freq {
			t.Errorf("reminder %s (%s) after the upgrade: %d %s", r.ID, r.Freq, code, body)
		}
		// An occurrence's record is kept 400 days.
		if age < 390*24*time.Hour {
			var wk upgradeWeek
			if code, body := getUpgJSON(t, base+"/v1/reminders?week="+r.Week, key, &wk); code != http.StatusOK {
				t.Errorf("reminders of %s: %d %s", r.Week, code, body)
			}
			wantState := "pending"
			switch {
			case r.Freq == "once":
				wantState = "scheduled"
			case time.Until(r.Start) < 25*time.Hour:
				wantState = "" // its day has come (handed over, sent or missed): listed
			}
			found := false
			for _, o := range wk.Occurrences {
				if o.Reminder == r.ID && o.Date == r.Date {
					found = true
					if wantState != "" && (o.State != wantState || !slices.Equal(o.MessageIDs, r.IDs)) {
						t.Errorf("reminder %s's occurrence %s after the upgrade: %s %v, want %s %v", r.ID, r.Date, o.State, o.MessageIDs, wantState, r.IDs)
					}
				}
			}
			if !found {
				t.Errorf("reminder %s's occurrence %s is not in week %s after the upgrade: %+v", r.ID, r.Date, r.Week, wk)
			}
		}
		if r.Freq != "once" {
			// Deleted, as a user can: its occurrence a day ahead, if the
			// check runs then, was made a scheduled message at the
			// start, which the delete cancels (else it would wait in the
			// store past every check below; 409 when it is going out
			// this very moment: then it goes, and is delivered below).
			if code, body, _ := httpUpg(t, http.MethodDelete, base+"/v1/reminders/"+r.ID, key, "", "", ""); code != http.StatusNoContent && code != http.StatusOK && code != http.StatusConflict {
				t.Errorf("deleting reminder %s of the older build: %d %s", r.ID, code, body)
			}
			continue
		}
		// It goes at its time, a few seconds after the older build's stop.
		if wait := time.Until(r.Start); wait > time.Minute {
			t.Fatalf("reminder %s is due in %v: the store's clock is ahead of this one", r.ID, wait)
		}
		want[r.To] = segment.Sign(r.Text, upgradeSigOf(r.Account), "")
		for _, id := range r.IDs {
			delivered = append(delivered, owned{r.Account, id})
		}
	}

	// Every message of them reaches the SMSC, once, as sent.
	within := 40 * time.Second
	if wait := time.Until(latestStart(st)); wait > 0 {
		within += wait
	}
	waitCond(t, within, "every HTTP send, job row and reminder at the SMSC", func() bool {
		for dst := range want {
			if _, _, ok, _ := simText(sim, dst); !ok {
				return false
			}
		}
		return true
	})
	for _, r := range st.Reminders {
		if r.Freq == "once" {
			for _, m := range sim.Received() {
				if m.Dest == r.To && m.At.Before(r.Start.Add(-time.Second)) {
					t.Errorf("reminder %s went at %v, due %v", r.ID, m.At, r.Start)
				}
			}
		}
	}
	for _, id := range delivered {
		var m struct{ State string }
		waitCond(t, 20*time.Second, "message "+id.id+" delivered", func() bool {
			code, body := getUpgJSON(t, base+"/v1/messages/"+id.id, st.APIKeys[id.account], &m)
			if code != http.StatusOK {
				t.Fatalf("message %s of %s after the upgrade: %d %s", id.id, id.account, code, body)
			}
			return m.State == "delivered"
		})
	}
	// The job rows have no id to ask: everything stored ends delivered.
	waitCond(t, 20*time.Second, "every message delivered", func() bool {
		return metricSum(t, d, `qxtd_queue_segments{state="accepted"}`)+metricSum(t, d, `qxtd_queue_segments{state="submitted"}`) == 0
	})
	for dst, text := range want {
		if got, n, _, err := simText(sim, dst); err != nil || got != text || n != 1 {
			t.Errorf("to %s the SMSC got %q (%d submit_sm, %v), want %q once", dst, got, n, err, text)
		}
	}
}

// latestStart is the time of the last one-off reminder of st (zero:
// none).
func latestStart(st upgradeStore) time.Time {
	var last time.Time
	for _, r := range st.Reminders {
		if r.Freq == "once" && r.Start.After(last) {
			last = r.Start
		}
	}
	return last
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// checkStoredKeys reads, with this build's store, the Idempotency-Key
// answers the older build kept (on a copy of dir/qxtd.db, before the
// daemon opens it): each keyed HTTP send's answer is there, byte for byte,
// whatever the store's age. The daemon replays them only within their
// 24 h (checkUpgradeExtras), which this check does not depend on.
func checkStoredKeys(t *testing.T, dir string, st upgradeStore) {
	t.Helper()
	var keyed []upgradeHTTP
	for _, h := range st.HTTP {
		if h.Key != "" {
			keyed = append(keyed, h)
		}
	}
	if len(keyed) == 0 {
		return
	}
	b, err := os.ReadFile(filepath.Join(dir, "qxtd.db"))
	if err != nil {
		t.Fatal(err)
	}
	cp := filepath.Join(t.TempDir(), "copy.db")
	if err := os.WriteFile(cp, b, 0o600); err != nil {
		t.Fatal(err)
	}
	s, err := queue.Open(cp, queue.Options{NoSync: true})
	if err != nil {
		t.Fatalf("this build's store on a copy of the older build's: %v", err)
	}
	defer s.Close()
	// The answers are listed without their bodies: their whole keys (the
	// enterprise first) by user, route and key, then each read.
	keys := map[string]string{}
	err = s.Answers(func(a *queue.Answer, _ int) {
		if _, rest, ok := strings.Cut(a.Key, "\x00"); ok {
			keys[rest] = a.Key
		}
	})
	if err != nil {
		t.Fatalf("the kept answers: %v", err)
	}
	for _, h := range keyed {
		a, err := s.LoadAnswer(keys[h.Account+"\x00"+h.Route+"\x00"+h.Key])
		if err != nil || a.Code != http.StatusOK || string(a.Body) != h.Answer {
			t.Errorf("Idempotency-Key %s of %s on %s: kept %+v (%v), want status 200 and the older build's answer %s", h.Key, h.Account, h.Route, a, err, h.Answer)
		}
	}
}
