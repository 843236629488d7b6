//go:build upgradegen

package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fiorix/go-smpp/smpp/pdu/pdutlv"

	"github.com/qxtd/qxtd/reminder"
	"github.com/qxtd/qxtd/segment"
	"github.com/qxtd/qxtd/smpp"
)

// TestMakeUpgradeStore writes testdata/upgrade/COMMIT-STOP.db.gz and
// .json (see upgrade_test.go): it builds qxtd at UPGRADEGEN_COMMIT from
// this repository's history (in a git worktree it removes; or runs
// UPGRADEGEN_BIN, built from that commit), has an ESME submit a mix of
// messages to it (upgradeMsg's kinds), at a commit that has them
// (extrasAt) also HTTP sends, batch jobs, replies and reminders
// (genExtras), at one that has them (repliesAt) replies of a user that
// takes long ones in parts, binary and split ones (genUserReplies), and
// stops it with UPGRADEGEN_STOP (sigterm, the default,
// or kill9). What the build left beside qxtd.db (the batch jobs' spool)
// goes to COMMIT-STOP.files.tar.gz. UPGRADEGEN_OUT writes elsewhere than
// testdata/upgrade; UPGRADEGEN_CHECK=1 then starts this build on a copy
// (checkUpgrade), as TestUpgradeFromOlderStore does. (Not QXTD_: the
// daemon takes QXTD_ variables for configuration keys.) Not run by make test:
//
//	UPGRADEGEN_COMMIT=db3f5c0 go test -tags upgradegen -run TestMakeUpgradeStore -v ./cmd/qxtd/
func TestMakeUpgradeStore(t *testing.T) {
	commit := os.Getenv("UPGRADEGEN_COMMIT")
	if commit == "" {
		t.Fatal("UPGRADEGEN_COMMIT: the commit to build")
	}
	out, err := exec.Command("git", "rev-parse", "--short=7", commit+"^{commit}").Output()
	if err != nil {
		t.Fatalf("git rev-parse %s: %v", commit, err)
	}
	commit = strings.TrimSpace(string(out))
	stop := os.Getenv("UPGRADEGEN_STOP")
	if stop == "" {
		stop = "sigterm"
	}
	if stop != "sigterm" && stop != "kill9" {
		t.Fatalf("UPGRADEGEN_STOP %q: sigterm or kill9", stop)
	}
	outDir := os.Getenv("UPGRADEGEN_OUT")
	if outDir == "" {
		outDir = filepath.Join("testdata", "upgrade")
	}
	bin := os.Getenv("UPGRADEGEN_BIN")
	if bin == "" {
		bin = buildCommit(t, commit)
	}

	dir := t.TempDir()
	// Receipts only when injected: the messages sent stay waiting for theirs.
	sim, simAddr := startSim(t, smpp.SimOptions{DLRDelay: time.Hour})
	extras := extrasAt(t, commit)
	replies := extras && repliesAt(t, commit)
	cfg := writeUpgradeConfig(t, dir, simAddr, extras, replies)
	d := startDaemonBin(t, bin, cfg)
	sink := newSink()
	c := dialESME(t, d.smppAddr, sink.handler())
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	st := upgradeStore{Commit: commit, Stop: stop, Written: time.Now().UTC().Truncate(time.Second)}
	add := func(m upgradeMsg, payload bool, schedule string) {
		t.Helper()
		id, err := submitUpg(ctx, c, m.Dest, m.Text, payload, schedule, nil, m.Priority)
		if err != nil {
			t.Fatalf("%s to %s: %v", m.Kind, m.Dest, err)
		}
		m.IDs = []string{id}
		st.Messages = append(st.Messages, m)
	}
	long := strings.Repeat("长短信的内容，", 30) + "完。"

	// Sent: two with their receipts back, two (one long) waiting for theirs.
	add(upgradeMsg{Kind: "done", Dest: "13900000001", Text: "done before the upgrade"}, false, "")
	add(upgradeMsg{Kind: "done", Dest: "13900000002", Text: "升级前已送达"}, false, "")
	add(upgradeMsg{Kind: "sent", Dest: "13900000011", Text: "sent, its receipt after the upgrade"}, false, "")
	add(upgradeMsg{Kind: "sent", Dest: "13900000012", Text: "已发送：" + long}, true, "")
	waitCond(t, 30*time.Second, "the sent messages at the SMSC", func() bool {
		for _, m := range st.Messages {
			if _, _, ok, _ := simText(sim, m.Dest); !ok {
				return false
			}
		}
		return true
	})
	var done []string
	for i := range st.Messages {
		m := &st.Messages[i]
		for _, r := range sim.Received() {
			if r.Dest != m.Dest {
				continue
			}
			if m.Kind == "done" {
				if err := sim.InjectReceipt(r.ID, r.Dest, r.Source); err != nil {
					t.Fatal(err)
				}
				done = append(done, m.IDs...)
				continue
			}
			m.SMSCIDs = append(m.SMSCIDs, r.ID)
			m.Source = r.Source
		}
	}
	sink.waitAll(t, done, 30*time.Second)

	// Waiting: the SMSC throttles everything from now on.
	sim.SetFaults(smpp.Faults{Throttle: 1})
	add(upgradeMsg{Kind: "queued", Dest: "13900000021", Text: "queued at the upgrade"}, false, "")
	add(upgradeMsg{Kind: "queued", Dest: "13900000022", Text: "升级时排队的短信"}, false, "")
	add(upgradeMsg{Kind: "queued", Dest: "13900000023", Text: "queued, in message payload"}, true, "")
	add(upgradeMsg{Kind: "queued", Dest: "13900000024", Text: "优先：queued with priority", Priority: 1}, false, "")
	add(upgradeMsg{Kind: "long", Dest: "13900000031", Text: "排队的" + long}, true, "")
	// Due in 5 s: while the older build is stopped, or then throttled.
	add(upgradeMsg{Kind: "scheduled", Dest: "13900000041", Text: "scheduled 5 s ahead", Due: time.Now().Add(5 * time.Second).UTC()}, false, "000000000005000R")
	add(upgradeMsg{Kind: "future", Dest: "13900000051", Text: "定时：二〇三五年"}, false, "350101000000000+")
	for i, prio := range []uint8{0, 1} {
		n := strconv.Itoa(i + 1)
		split := upgradeMsg{Kind: "split", Dest: "1390000006" + n, Ref: 0x5a + uint8(i), Before: 2, Priority: prio,
			Parts: []string{"第一段" + n + strings.Repeat("一", 30), "第二段" + strings.Repeat("二", 30), "第三段" + strings.Repeat("三", 30)}}
		split.Text = strings.Join(split.Parts, "")
		for seq := 1; seq <= split.Before; seq++ {
			id, err := submitUpg(ctx, c, split.Dest, split.Parts[seq-1], false, "", splitUDH(split.Ref, len(split.Parts), seq), prio)
			if err != nil {
				t.Fatalf("split part %d: %v", seq, err)
			}
			split.IDs = append(split.IDs, id)
		}
		st.Messages = append(st.Messages, split)
	}
	if extras {
		genExtras(t, d, sim, &st, replies)
	}

	switch stop {
	case "sigterm":
		d.stop(t)
	case "kill9":
		if err := d.cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		<-d.exited
	}
	for _, m := range st.Messages {
		if m.Kind == "done" || m.Kind == "sent" {
			continue
		}
		if _, n, _, _ := simText(sim, m.Dest); n != 0 {
			t.Fatalf("the %s message to %s reached the throttling SMSC", m.Kind, m.Dest)
		}
	}
	var waiting []string // the extras' destinations
	for _, h := range st.HTTP {
		waiting = append(waiting, h.Dests...)
	}
	for _, j := range st.Jobs {
		waiting = append(waiting, j.Dests...)
	}
	for _, r := range st.Reminders {
		waiting = append(waiting, r.To)
	}
	for _, dst := range waiting {
		if _, n, _, _ := simText(sim, dst); n != 0 {
			t.Fatalf("the message to %s reached the throttling SMSC", dst)
		}
	}
	for line := range strings.SplitSeq(d.log(), "\n") {
		if strings.Contains(line, `"level":"ERROR"`) || strings.Contains(line, `"level":"WARN"`) {
			t.Logf("%s logged: %s", commit, line)
		}
	}

	// The store, gzipped, and what it holds.
	db, err := os.ReadFile(filepath.Join(dir, "qxtd.db"))
	if err != nil {
		t.Fatal(err)
	}
	var gz bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&gz, gzip.BestCompression)
	if _, err := zw.Write(db); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	base := filepath.Join(outDir, commit+"-"+stop)
	if err := os.MkdirAll(outDir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(base+".db.gz", gz.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("%s: store %d bytes, %d gzipped", base, len(db), gz.Len())
	// What the older build left beside its store (its batch jobs' spool):
	// a store is the file and these.
	if tgz, files := archiveBeside(t, dir); len(files) > 0 {
		st.Files = files
		if err := os.WriteFile(base+".files.tar.gz", tgz, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("%s: %v beside the store, %d bytes gzipped", base, files, len(tgz))
		// A resumed job reads its file at the path stored, if it is
		// still there: gone, as it is wherever the test runs later, so
		// that UPGRADEGEN_CHECK reads the copies as TestUpgradeFromOlderStore does.
		for _, f := range files {
			if err := os.Remove(filepath.Join(dir, filepath.FromSlash(f))); err != nil {
				t.Fatal(err)
			}
		}
	} else if err := os.Remove(base + ".files.tar.gz"); err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	js, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(base+".json", append(js, '\n'), 0o644); err != nil {
		t.Fatal(err)
	}

	if os.Getenv("UPGRADEGEN_CHECK") == "1" {
		t.Run("upgrade", func(t *testing.T) {
			start := time.Now()
			dir := t.TempDir()
			checkUpgrade(t, dir, readUpgradeStore(t, base, dir))
			t.Logf("upgrade checked in %v", time.Since(start))
		})
	}
}

// buildCommit builds cmd/qxtd at commit in a git worktree it removes after.
func buildCommit(t *testing.T, commit string) string {
	t.Helper()
	tmp := t.TempDir()
	src := filepath.Join(tmp, "src")
	if out, err := exec.Command("git", "worktree", "add", "--detach", src, commit).CombinedOutput(); err != nil {
		t.Fatalf("git worktree add %s: %v\n%s", commit, err, out)
	}
	defer func() {
		if out, err := exec.Command("git", "worktree", "remove", "--force", src).CombinedOutput(); err != nil {
			t.Errorf("git worktree remove: %v\n%s", err, out)
		}
	}()
	bin := filepath.Join(tmp, "qxtd-"+commit)
	start := time.Now()
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/qxtd")
	cmd.Dir = src
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build at %s: %v\n%s", commit, err, out)
	}
	t.Logf("built %s in %v", commit, time.Since(start))
	return bin
}

// extrasAt says whether the build at commit has what upgradeExtras uses:
// HTTP sends with Idempotency-Keys kept in the store, batch jobs that
// resume, the inbox of replies to a service number, reminders. Older
// stores keep the messages over SMPP only.
func extrasAt(t *testing.T, commit string) bool {
	t.Helper()
	for _, f := range []string{"api/idemstore.go", "batch/store.go", "api/v1_inbox.go", "api/v1_reminders.go"} {
		if err := exec.Command("git", "cat-file", "-e", commit+":"+f).Run(); err != nil {
			t.Logf("%s has no %s: the store gets SMPP messages only", commit, f)
			return false
		}
	}
	return true
}

// repliesAt says whether the build at commit has what genUserReplies
// uses: a user's long_replies (set through the admin API), binary replies
// kept as octets, replies the SMSC split joined from parts stored as they
// come (smpp.mo_reassembly_timeout, which writeUpgradeConfig then sets).
func repliesAt(t *testing.T, commit string) bool {
	t.Helper()
	for _, w := range []struct{ path, text string }{
		{"api/admin_users.go", `json:"long_replies,omitempty"`},
		{"queue/mo.go", `json:"binary,omitempty"`},
		{"gateway/moparts.go", "func (g *Gateway) joinMOParts("},
		{"cmd/qxtd/config.go", `mapstructure:"mo_reassembly_timeout"`},
	} {
		b, err := exec.Command("git", "show", commit+":"+w.path).Output()
		if err != nil || !bytes.Contains(b, []byte(w.text)) {
			t.Logf("%s has no %s in %s: the store gets no replies of a user with long_replies", commit, w.text, w.path)
			return false
		}
	}
	return true
}

// genExtras has the older build d, while the SMSC throttles everything
// (so that every message waits to be sent at the stop), get what is not
// an SMPP message, into st: API keys; HTTP sends, two with an
// Idempotency-Key; replies to T2's service number, two forwarded to its
// bind and two waiting for one (no bind up at the stop); a batch job that
// ended; reminders, one far ahead and a one-off due 25 s from now; and
// last a batch job that the stop will cut (T2 goes at 10 messages a
// second), returned once it has some of its rows accepted. With replies,
// after T2's, those of a user of T2 (genUserReplies).
func genExtras(t *testing.T, d *proc, sim *smpp.Simulator, st *upgradeStore, replies bool) {
	t.Helper()
	base := "http://" + d.httpAddr
	st.APIKeys = map[string]string{"esme": issueAPIKey(t, base, "esme"), "esme2": issueAPIKey(t, base, "esme2")}

	// Replies: two forwarded to T2's bind, then, that bind gone, two that
	// wait for the next.
	mo := newMOSink()
	c2 := dialAs(t, d.smppAddr, "esme2", "secret2", mo.handler())
	reply := func(from, text string, forwarded bool) {
		t.Helper()
		if err := sim.InjectMO(from, upgradeServiceNumber, text); err != nil {
			t.Fatalf("reply from %s: %v", from, err)
		}
		st.Replies = append(st.Replies, upgradeReply{From: from, To: upgradeServiceNumber, Text: text, Forwarded: forwarded})
	}
	inboxSays := func(what string) {
		t.Helper()
		waitCond(t, 20*time.Second, "the inbox: "+what, func() bool {
			var in upgradeInbox
			if code, body := getUpgJSON(t, base+"/v1/inbox?limit=100", st.APIKeys["esme2"], &in); code != http.StatusOK {
				t.Fatalf("inbox: %d %s", code, body)
			}
			for _, r := range st.Replies {
				n := 0
				for _, got := range in.Replies {
					if got.From == r.From && got.Text == r.Text && got.Forwarded == r.Forwarded {
						n++
					}
				}
				if n != 1 {
					return false
				}
			}
			return len(in.Replies) == len(st.Replies)
		})
	}
	reply("13700003001", "收到，谢谢", true)
	reply("13700003002", "ok, see you at 3", true)
	waitCond(t, 20*time.Second, "the first replies at T2's bind", func() bool {
		return mo.count("13700003001") == 1 && mo.count("13700003002") == 1
	})
	inboxSays("the first replies forwarded")
	bound := metricSum(t, d, "qxtd_esme_bound")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	if err := c2.Unbind(ctx); err != nil {
		t.Fatalf("unbind esme2: %v", err)
	}
	cancel()
	_ = c2.Close()
	waitCond(t, 10*time.Second, "T2's bind gone", func() bool { return metricSum(t, d, "qxtd_esme_bound") == bound-1 })
	reply("13700003003", "升级时还没转发的回复", false)
	reply("13700003004", "waiting for a bind", false)
	inboxSays("the last replies not forwarded")
	if replies {
		genUserReplies(t, d, sim, st)
	}

	// HTTP sends of T1, two with a key.
	send := func(route, key string, body any) {
		t.Helper()
		b, err := json.Marshal(body)
		if err != nil {
			t.Fatal(err)
		}
		code, answer, _ := httpUpg(t, http.MethodPost, base+route, st.APIKeys["esme"], key, "application/json", string(b))
		var res struct {
			Results []struct{ To, Status, ID string }
		}
		if code != http.StatusOK || json.Unmarshal([]byte(answer), &res) != nil {
			t.Fatalf("POST %s: %d %s", route, code, answer)
		}
		h := upgradeHTTP{Account: "esme", Route: route, Key: key, Body: string(b), Answer: answer}
		for _, r := range res.Results {
			if r.Status != "accepted" || r.ID == "" {
				t.Fatalf("POST %s: %s", route, answer)
			}
			h.Dests, h.IDs = append(h.Dests, r.To), append(h.IDs, r.ID)
		}
		switch b := body.(type) {
		case map[string]any:
			for range h.Dests {
				h.Texts = append(h.Texts, b["text"].(string))
			}
		case map[string][]map[string]string:
			for _, m := range b["messages"] {
				h.Texts = append(h.Texts, m["text"])
			}
		}
		if len(h.Texts) != len(h.Dests) {
			t.Fatalf("POST %s: %d results for %d texts: %s", route, len(h.Dests), len(h.Texts), answer)
		}
		st.HTTP = append(st.HTTP, h)
	}
	send("/v1/messages", "upg-http-1", map[string]any{"to": []string{"13700000001", "13700000002"}, "text": "HTTP 群发：升级时排队"})
	send("/v1/messages", "", map[string]any{"to": []string{"13700000003"}, "text": "an HTTP send without a key"})
	send("/v1/messages/personalized", "upg-http-2", map[string][]map[string]string{"messages": {
		{"to": "13700000004", "text": "张三您好，验证码 384921"}, {"to": "13700000005", "text": "李四您好，验证码 902113"}}})

	// A batch job of T2 that ends before the stop.
	done := startJob(t, base, st.APIKeys["esme2"], "1370002", 3, "批量：升级前已完成的第")
	waitCond(t, 20*time.Second, "the first job done", func() bool {
		var p upgradeJobProgress
		_, body := getUpgJSON(t, base+"/v1/batches/"+done.ID, st.APIKeys["esme2"], &p)
		if p.State != "running" && (p.State != "done" || p.Accepted != len(done.Dests)) {
			t.Fatalf("the first job: %s", body)
		}
		done.Accepted = p.Accepted
		return p.State == "done"
	})
	done.State = "done"
	st.Jobs = append(st.Jobs, done)

	// Reminders of esme: one far ahead, one due 25 s from now (after the
	// stop), handed to the gateway at once.
	// Far: a Monday some 300 days on (a reminder may start at most a
	// year ahead), 09:00 in Shanghai.
	far := time.Now().In(reminder.Shanghai).AddDate(0, 0, 300)
	for far.Weekday() != time.Monday {
		far = far.AddDate(0, 0, 1)
	}
	far = time.Date(far.Year(), far.Month(), far.Day(), 9, 0, 0, 0, reminder.Shanghai)
	remind(t, base, st, upgradeReminder{Account: "esme", Freq: "weekly", Text: "明年的周会", To: "13700004002", Start: far},
		`"weekdays":["mon"],"count":3,`)
	remind(t, base, st, upgradeReminder{Account: "esme", Freq: "once", Text: "提醒：升级后发出", To: "13700004001",
		Start: time.Now().Add(25 * time.Second).Truncate(time.Second)}, "")

	// Last, a job the stop cuts: 60 rows at 10 a second.
	running := startJob(t, base, st.APIKeys["esme2"], "1370001", 60, "批量：升级时还在发的第")
	waitCond(t, 20*time.Second, "the second job under way", func() bool {
		var p upgradeJobProgress
		getUpgJSON(t, base+"/v1/batches/"+running.ID, st.APIKeys["esme2"], &p)
		if p.State != "running" {
			t.Fatalf("the second job is %+v before the stop", p)
		}
		running.Accepted = p.Accepted
		return p.Accepted >= 15
	})
	running.State = "running"
	st.Jobs = append(st.Jobs, running)
}

// genUserReplies has the older build d keep replies for a user of T2
// that takes long replies in parts (long_replies udh8): T2 given ext_len
// 1 and the user esme3, with extension 7, created through its admin API,
// so that they are in its store only. The user never binds, so that
// every reply waits for its bind at the stop: a GSM text of 300
// characters with a '€' (2 parts to the user) and a Chinese one (3
// parts), each in one deliver_sm; a binary reply (data_coding 0x04, a
// destination_port); a reply the SMSC sent in 3 parts of which 2 came
// (kept as parts, the third injected after the upgrade); and one of 2
// parts that both came, joined. The counts of parts to the user are
// those of TS 23.040 with an 8-bit concatenation UDH: 153 septets or 67
// UCS-2 characters a part.
func genUserReplies(t *testing.T, d *proc, sim *smpp.Simulator, st *upgradeStore) {
	t.Helper()
	base := "http://" + d.httpAddr
	u := &upgradeReplyUser{SystemID: "esme3", Password: "secret3", Extension: "7", LongReplies: "udh8", To: upgradeServiceNumber + "7"}
	if code, body := postJSON(t, http.MethodPatch, base+"/admin/v1/enterprises/T2", "test-token", `{"ext_len":1}`); code != http.StatusOK {
		t.Fatalf("T2's ext_len: %d %s", code, body)
	}
	b, err := json.Marshal(map[string]string{"system_id": u.SystemID, "password": u.Password, "name": u.SystemID,
		"extension": u.Extension, "long_replies": u.LongReplies})
	if err != nil {
		t.Fatal(err)
	}
	if code, body := postJSON(t, http.MethodPost, base+"/admin/v1/enterprises/T2/users", "test-token", string(b)); code != http.StatusCreated {
		t.Fatalf("user %s: %d %s", u.SystemID, code, body)
	}
	st.ReplyUser = u

	whole := func(r upgradeUserReply, sm smpp.SM) {
		t.Helper()
		sm.SourceAddr, sm.DestinationAddr = r.From, u.To
		if err := sim.InjectDeliverSM(sm); err != nil {
			t.Fatalf("the %s reply of %s: %v", r.Kind, r.From, err)
		}
		st.UserReplies = append(st.UserReplies, r)
	}
	gsm := []rune("A reply too long for one SMS, kept for the user's next bind: 20€ paid. ")
	for len(gsm) < 300 {
		gsm = append(gsm, []rune(" waiting")...)
	}
	long := upgradeUserReply{Kind: "long", From: "13700005001", Text: string(gsm[:300]), Delivered: 2} // 301 septets
	dc, body := segment.TextBody(long.Text)
	whole(long, smpp.SM{DataCoding: dc, TLVs: []smpp.TLVField{{Tag: pdutlv.TagMessagePayload, Value: body}}})
	chinese := upgradeUserReply{Kind: "long", From: "13700005002", Text: strings.Repeat("升级前收到的长回复，", 15), Delivered: 3} // 150 characters
	dc, body = segment.TextBody(chinese.Text)
	whole(chinese, smpp.SM{DataCoding: dc, TLVs: []smpp.TLVField{{Tag: pdutlv.TagMessagePayload, Value: body}}})
	bin := upgradeUserReply{Kind: "binary", From: "13700005003", DataCoding: 0x04, DestPort: 0x23F4, Delivered: 1}
	for i := range 100 {
		bin.Binary = append(bin.Binary, byte(i*5)) // 0x00 and 0xff among them
	}
	whole(bin, smpp.SM{DataCoding: bin.DataCoding, ShortMessage: bin.Binary,
		TLVs: []smpp.TLVField{{Tag: pdutlv.TagDestinationPort, Value: []byte{byte(bin.DestPort >> 8), byte(bin.DestPort)}}}})

	// In parts, as the SMSC split them: 60 UCS-2 characters or 100
	// septets each.
	parts := func(r upgradeUserReply) {
		t.Helper()
		r.Text = strings.Join(r.Parts, "")
		for seq := 1; seq <= r.Before; seq++ {
			if err := sim.InjectDeliverSM(upgradeMOPart(r, u.To, seq)); err != nil {
				t.Fatalf("part %d of the %s reply of %s: %v", seq, r.Kind, r.From, err)
			}
		}
		st.UserReplies = append(st.UserReplies, r)
	}
	parts(upgradeUserReply{Kind: "partial", From: "13700005004", Ref: 0xa1, Before: 2, Delivered: 3, Parts: []string{ // 180 characters
		strings.Repeat("第一段", 20), strings.Repeat("第二段", 20), strings.Repeat("第三段：升级后才到。", 6)}})
	parts(upgradeUserReply{Kind: "joined", From: "13700005005", Ref: 0xa2, Before: 2, Delivered: 2, Parts: []string{ // 200 septets
		strings.Repeat("part one, ", 10), strings.Repeat("part two, ", 10)}})

	// Stored, waiting for the user's bind: all but the one still in parts.
	waitCond(t, 20*time.Second, "the inbox listing the user's replies", func() bool {
		var in upgradeInbox
		if code, body := getUpgJSON(t, base+"/v1/inbox?limit=100", st.APIKeys["esme2"], &in); code != http.StatusOK {
			t.Fatalf("inbox: %d %s", code, body)
		}
		n := 0
		for _, got := range in.Replies {
			if got.Account != u.SystemID {
				continue
			}
			if got.Forwarded || got.To != u.To || got.From == "13700005004" {
				t.Fatalf("the inbox lists %+v", got)
			}
			n++
		}
		return n == len(st.UserReplies)-1
	})
}

// startJob posts a batch job of n rows to numbers prefix+0001… (prefix: 7
// digits) with texts
// text+row number.
func startJob(t *testing.T, base, key, prefix string, n int, text string) upgradeJob {
	t.Helper()
	j := upgradeJob{Account: "esme2"}
	var file strings.Builder
	for i := 1; i <= n; i++ {
		j.Dests = append(j.Dests, fmt.Sprintf("%s%04d", prefix, i))
		j.Texts = append(j.Texts, fmt.Sprintf("%s%d行", text, i))
		fmt.Fprintf(&file, "%s,%s\n", j.Dests[i-1], j.Texts[i-1])
	}
	code, body, _ := httpUpg(t, http.MethodPost, base+"/v1/batches", key, "", "text/csv", file.String())
	var created struct {
		JobID string `json:"job_id"`
	}
	if code != http.StatusAccepted || json.Unmarshal([]byte(body), &created) != nil || created.JobID == "" {
		t.Fatalf("batch: %d %s", code, body)
	}
	j.ID = created.JobID
	return j
}

// remind sets r (rule: more fields of the request) and waits until its
// first occurrence is listed: for a one-off, handed to the gateway
// (scheduled, its message ids).
func remind(t *testing.T, base string, st *upgradeStore, r upgradeReminder, rule string) {
	t.Helper()
	r.Body = fmt.Sprintf(`{"text":%q,"freq":%q,%s"start":%q,"to":[%q]}`, r.Text, r.Freq, rule, r.Start.Format(time.RFC3339), r.To)
	key := st.APIKeys[r.Account]
	code, body, _ := httpUpg(t, http.MethodPost, base+"/v1/reminders", key, "", "application/json", r.Body)
	var created struct{ ID string }
	if code != http.StatusCreated && code != http.StatusOK || json.Unmarshal([]byte(body), &created) != nil || created.ID == "" {
		t.Fatalf("reminder: %d %s", code, body)
	}
	r.ID = created.ID
	r.Week = reminder.WeekOf(r.Start).String()
	r.Date = r.Start.In(reminder.Shanghai).Format(time.DateOnly)
	waitCond(t, 10*time.Second, "reminder "+r.ID+" listed", func() bool {
		var wk upgradeWeek
		if code, body := getUpgJSON(t, base+"/v1/reminders?week="+r.Week, key, &wk); code != http.StatusOK {
			t.Fatalf("reminders of %s: %d %s", r.Week, code, body)
		}
		for _, o := range wk.Occurrences {
			if o.Reminder == r.ID && o.Date == r.Date {
				r.IDs = o.MessageIDs
				return r.Freq != "once" || o.State == "scheduled" && len(o.MessageIDs) > 0
			}
		}
		return false
	})
	st.Reminders = append(st.Reminders, r)
}

// archiveBeside is a gzipped tar of everything in dir but the store and
// the configuration the test wrote, and the paths it holds (files only,
// relative, slash-separated); none: nil.
func archiveBeside(t *testing.T, dir string) ([]byte, []string) {
	t.Helper()
	var buf bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&buf, gzip.BestCompression)
	tw := tar.NewWriter(zw)
	var files []string
	err := filepath.WalkDir(dir, func(path string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(dir, path)
		if err != nil || rel == "." || rel == "qxtd.db" || rel == "qxtd.yaml" {
			return err
		}
		fi, err := e.Info()
		if err != nil {
			return err
		}
		h, err := tar.FileInfoHeader(fi, "")
		if err != nil {
			return err
		}
		h.Name = filepath.ToSlash(rel)
		h.ModTime, h.Uname, h.Gname, h.Uid, h.Gid = time.Time{}, "", "", 0, 0
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		if !e.Type().IsRegular() {
			if !e.IsDir() {
				return fmt.Errorf("%s: neither a file nor a directory", rel)
			}
			return nil
		}
		b, err := os.ReadFile(path)
		if err == nil {
			_, err = tw.Write(b)
		}
		files = append(files, h.Name)
		return err
	})
	if err == nil {
		err = tw.Close()
	}
	if err == nil {
		err = zw.Close()
	}
	if err != nil {
		t.Fatalf("archiving what is beside the store: %v", err)
	}
	if len(files) == 0 {
		return nil, nil
	}
	return buf.Bytes(), files
}
