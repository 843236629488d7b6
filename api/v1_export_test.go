package api

import (
	"bufio"
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/qxtd/qxtd/policy"
	"github.com/qxtd/qxtd/queue"
)

// exportGet fetches path as token and returns the status, the body read
// to its end, and the trailers (with Content-Type and Content-Disposition).
func exportGet(t *testing.T, url, path, token string) (int, []byte, http.Header) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, url+path, nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: the body: %v", path, err)
	}
	h := resp.Trailer.Clone()
	if h == nil {
		h = http.Header{}
	}
	for _, k := range []string{"Content-Disposition", "Content-Type"} {
		h.Set(k, resp.Header.Get(k)) // handy for the checks
	}
	return resp.StatusCode, body, h
}

// TestExportMessages: GET /v1/messages/export writes the caller's outbox,
// every page of it (3 messages read 2 at a time), as CSV or JSON Lines,
// the rows the list shows and no other enterprise's or user's; lang=zh is
// for Excel (a BOM, Chinese headers and states, Beijing times); a range
// with nothing in it is a header alone; a complete file says its rows in
// a trailer.
func TestExportMessages(t *testing.T) {
	r := newUserRig(t)
	r.srv.user.exportPage = 2
	for _, text := range []string{"导出一", "导出二", "导出三"} {
		r.send(r.keys["alice"], SendRequest{To: []string{uNumA1}, Text: text})
	}
	r.send(r.keys["bob"], SendRequest{To: []string{uNumA1}, Text: "乙公司的"})
	// Compared once final: a state that moves on between the list and
	// the export is not a difference.
	var list MessagePage
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		r.must(http.StatusOK, "GET", "/v1/messages", r.keys["alice"], nil, &list)
		if len(list.Messages) == 3 && !slices.ContainsFunc(list.Messages, func(m Message) bool { return m.DoneAt.IsZero() }) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("alice's outbox not final in 10 s: %+v", list.Messages)
		}
	}

	code, body, tr := exportGet(t, r.url, "/v1/messages/export", r.keys["alice"])
	if code != http.StatusOK || tr.Get(ExportRowsTrailer) != "3" || !strings.HasPrefix(tr.Get("Content-Type"), "text/csv") ||
		!strings.Contains(tr.Get("Content-Disposition"), `filename="outbox-A.csv"`) {
		t.Fatalf("export: %d, trailers %v\n%s", code, tr, body)
	}
	rows, err := csv.NewReader(bytes.NewReader(body)).ReadAll()
	if err != nil || len(rows) != 4 || rows[0][0] != "id" || rows[0][4] != "text" {
		t.Fatalf("CSV (%v):\n%s", err, body)
	}
	for i, m := range list.Messages {
		row := rows[i+1]
		if row[0] != m.ID || row[2] != m.To || row[4] != m.Text || row[5] != m.State || row[8] != m.AcceptedAt.UTC().Format(time.RFC3339) {
			t.Errorf("row %d %q, the list's message %+v", i+1, row, m)
		}
	}
	if bytes.Contains(body, []byte("乙公司的")) {
		t.Error("another enterprise's message in the export")
	}

	code, body, tr = exportGet(t, r.url, "/v1/messages/export?format=jsonl", r.keys["alice"])
	var ids []string
	for sc := bufio.NewScanner(bytes.NewReader(body)); sc.Scan(); {
		var m Message
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("jsonl line %q: %v", sc.Text(), err)
		}
		ids = append(ids, m.ID)
	}
	if want := []string{list.Messages[0].ID, list.Messages[1].ID, list.Messages[2].ID}; code != http.StatusOK || !slices.Equal(ids, want) || tr.Get(ExportRowsTrailer) != "3" {
		t.Fatalf("jsonl: %d, ids %v, want %v", code, ids, want)
	}

	code, body, _ = exportGet(t, r.url, "/v1/messages/export?lang=zh", r.keys["alice"])
	if !bytes.HasPrefix(body, []byte("\uFEFF消息ID,账号,接收号码")) || code != http.StatusOK {
		t.Fatalf("lang=zh: %d\n%s", code, body)
	}
	rows, _ = csv.NewReader(bytes.NewReader(bytes.TrimPrefix(body, []byte("\uFEFF")))).ReadAll()
	m := list.Messages[0]
	if len(rows) != 4 || rows[1][5] != m.StateZH || rows[1][8] != m.AcceptedAt.In(time.FixedZone("CST", 8*3600)).Format(time.DateTime) {
		t.Fatalf("lang=zh rows %q, message %+v", rows, m)
	}

	later := strings.ReplaceAll(time.Now().Add(time.Hour).UTC().Format(time.RFC3339), "+", "%2B")
	code, body, tr = exportGet(t, r.url, "/v1/messages/export?from="+later, r.keys["alice"])
	if code != http.StatusOK || strings.TrimSpace(string(body)) != strings.Join(columnsEN(), ",") || tr.Get(ExportRowsTrailer) != "0" {
		t.Fatalf("an empty range: %d %q, trailers %v", code, body, tr)
	}
	// al2 (a user, not an admin) sees its own: none of alice's.
	code, body, tr = exportGet(t, r.url, "/v1/messages/export?account=alice", r.keys["al2"])
	if code != http.StatusOK || bytes.Contains(body, []byte("导出")) || tr.Get(ExportRowsTrailer) != "0" {
		t.Fatalf("another user's: %d %s", code, body)
	}
	// By the recipient: all three to uNumA1, none to another number.
	code, _, tr = exportGet(t, r.url, "/v1/messages/export?number="+uNumA1[len(uNumA1)-4:], r.keys["alice"])
	if code != http.StatusOK || tr.Get(ExportRowsTrailer) != "3" {
		t.Fatalf("number=: %d, trailers %v", code, tr)
	}
	code, _, tr = exportGet(t, r.url, "/v1/messages/export?number="+uNumA2, r.keys["alice"])
	if code != http.StatusOK || tr.Get(ExportRowsTrailer) != "0" {
		t.Fatalf("number= another: %d, trailers %v", code, tr)
	}
	for _, bad := range []string{"format=xlsx", "lang=fr", "state=lost", "from=yesterday", "number=abc"} {
		if code, body, _ := exportGet(t, r.url, "/v1/messages/export?"+bad, r.keys["alice"]); code != http.StatusBadRequest {
			t.Errorf("%s: %d %s, want 400", bad, code, body)
		}
	}
}

func columnsEN() []string {
	var out []string
	for _, c := range messageColumns {
		out = append(out, c.en)
	}
	return out
}

// TestExportSlots: an enterprise runs at most MaxExportsPerEnterprise
// exports at once (429 beyond) while another enterprise's goes; a slot
// given back is taken again; MaxExports bounds all.
func TestExportSlots(t *testing.T) {
	r := newUserRig(t)
	var held []func()
	for range MaxExportsPerEnterprise {
		release, refused := r.srv.user.exports.take("A")
		if release == nil {
			t.Fatalf("a slot of A: %s", refused)
		}
		held = append(held, release)
	}
	r.wantError(http.StatusTooManyRequests, "too_many_requests", "GET", "/v1/messages/export", r.keys["alice"], nil)
	if code, body, _ := exportGet(t, r.url, "/v1/messages/export", r.keys["bob"]); code != http.StatusOK {
		t.Fatalf("B while A holds its exports: %d %s", code, body)
	}
	held[0]()
	held[0]() // twice: once
	if code, body, _ := exportGet(t, r.url, "/v1/messages/export", r.keys["alice"]); code != http.StatusOK {
		t.Fatalf("A after a slot was given back: %d %s", code, body)
	}
	// That export gave its slot back too: A holds one, and may take one.
	if release, refused := r.srv.user.exports.take("A"); release == nil {
		t.Fatalf("A's second slot after its export ended: %s", refused)
	} else {
		held[0] = release
	}
	r.wantError(http.StatusTooManyRequests, "too_many_requests", "GET", "/v1/messages/export", r.keys["alice"], nil)
	// Every slot of the node taken, by other enterprises: B waits too.
	for i := range MaxExports - MaxExportsPerEnterprise {
		if release, refused := r.srv.user.exports.take("X" + strconv.Itoa(i/MaxExportsPerEnterprise)); release == nil {
			t.Fatalf("slot %d: %s", i, refused)
		}
	}
	r.wantError(http.StatusTooManyRequests, "too_many_requests", "GET", "/v1/messages/export", r.keys["bob"], nil)
}

// TestExportSpreadsheetSafe: with lang=zh a cell Excel would run as a
// formula is quoted; nothing else changes.
func TestExportSpreadsheetSafe(t *testing.T) {
	for in, want := range map[string]string{
		"=HYPERLINK(\"x\")": "'=HYPERLINK(\"x\")", "+86 138": "'+86 138", "-10% 优惠": "'-10% 优惠", "@SUM(A1)": "'@SUM(A1)",
		"\tx": "'\tx", "\rx": "'\rx", "【甲公司】=": "【甲公司】=", "": "", "13800138000": "13800138000",
	} {
		if got := spreadsheetSafe(in); got != want {
			t.Errorf("%q: %q, want %q", in, got, want)
		}
	}
	var buf bytes.Buffer
	bw := bufio.NewWriter(&buf)
	write, err := exportWriter(bw, exportSpec[Message]{format: queue.FormatCSV, zh: true, columns: messageColumns})
	if err != nil {
		t.Fatal(err)
	}
	if err := write(&Message{ID: "7", Account: "=cmd", To: "13800138000", Text: "-1+1", StateZH: "接收成功", Segments: 1}); err != nil {
		t.Fatal(err)
	}
	bw.Flush()
	rows, err := csv.NewReader(strings.NewReader(strings.TrimPrefix(buf.String(), "\uFEFF"))).ReadAll()
	if err != nil || len(rows) != 2 || rows[1][1] != "'=cmd" || rows[1][4] != "'-1+1" || rows[1][2] != "13800138000" {
		t.Fatalf("rows %q (%v)", rows, err)
	}
}

// pagedPeer is a PeerLists whose node 2 has msgs (ids descending), paged
// by the query's limit; down refuses.
type pagedPeer struct {
	msgs []Message
	down bool
}

func (*pagedPeer) Self() uint16                                  { return 1 }
func (*pagedPeer) ListNodes(_ context.Context) ([]uint16, error) { return []uint16{2}, nil }
func (p *pagedPeer) PeerPage(_ context.Context, _ uint16, q NodeListQuery) (NodePage, error) {
	if p.down {
		return NodePage{}, errors.New("down")
	}
	var pg NodePage
	for _, m := range p.msgs {
		if id, _ := strconv.ParseUint(m.ID, 10, 64); q.Cursor == 0 || id < q.Cursor {
			if len(pg.Messages) == q.Limit {
				pg.Next, _ = strconv.ParseUint(pg.Messages[len(pg.Messages)-1].ID, 10, 64)
				break
			}
			pg.Messages = append(pg.Messages, m)
		}
	}
	return pg, nil
}

// TestClusterExportMessages: in a cluster the export merges this node's
// messages and another's, newest first, each once, across pages of 2;
// with the other node down it is a 503 before any row, not a file
// without that node's messages.
func TestClusterExportMessages(t *testing.T) {
	now := time.Now().Truncate(time.Second)
	peer := &pagedPeer{}
	for i := 5; i >= 1; i-- { // ids descending, every other second from now-10s
		peer.msgs = append(peer.msgs, Message{ID: strconv.FormatUint(2<<48|uint64(i), 10), Account: "u", To: "13800138000",
			Text: "peer " + strconv.Itoa(i), State: "delivered", AcceptedAt: now.Add(time.Duration(2*i-10) * time.Second)})
	}
	st, err := queue.Open(filepath.Join(t.TempDir(), "q.db"), queue.Options{NodeID: 1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	for i := 1; i <= 3; i++ {
		m := &queue.Message{Account: "u", Enterprise: "G1", Upstream: "sim", Dest: "13800138000", Text: "self " + strconv.Itoa(i),
			Parts: []queue.Part{{Body: []byte("x")}}}
		if err := st.Enqueue(t.Context(), m); err != nil {
			t.Fatal(err)
		}
	}
	s := New(Config{Store: st, PeerLists: peer})
	s.user.exportPage = 2
	c := &caller{user: &policy.User{SystemID: "u", Enterprise: "G1", Role: policy.RoleAdmin}, ent: &policy.Enterprise{Code: "G1"}}
	get := func() *httptest.ResponseRecorder {
		w := httptest.NewRecorder()
		s.exportMessages(c, w, httptest.NewRequest(http.MethodGet, "/v1/messages/export", nil))
		return w
	}
	w := get()
	rows, err := csv.NewReader(w.Body).ReadAll()
	if err != nil || w.Code != http.StatusOK || len(rows) != 9 {
		t.Fatalf("%d, %d rows (%v)", w.Code, len(rows), err)
	}
	var texts []string
	for _, row := range rows[1:] {
		texts = append(texts, row[4])
	}
	// This node's are the newest (accepted just now); the peer's follow, newest first.
	want := []string{"self 3", "self 2", "self 1", "peer 5", "peer 4", "peer 3", "peer 2", "peer 1"}
	if !slices.Equal(texts, want) || w.Result().Trailer.Get(ExportRowsTrailer) != "8" {
		t.Fatalf("texts %q, want %q; trailers %v", texts, want, w.Result().Trailer)
	}
	peer.down = true
	if w := get(); w.Code != http.StatusServiceUnavailable || strings.Contains(w.Body.String(), "self") {
		t.Fatalf("a node down: %d %s, want 503 and no row", w.Code, w.Body)
	}
}

// TestExportInbox: GET /v1/inbox/export writes the enterprise's replies,
// every page (5 read 2 at a time), newest first, as the inbox lists them,
// with its filters (number); a reply's text that Excel would run as a
// formula is quoted with lang=zh; a user sees its own extension's only;
// a reply the ESME took reads forwarded, one it refused for good refused.
func TestExportInbox(t *testing.T) {
	r := newUserRig(t)
	r.srv.user.exportPage = 2
	t0 := time.Now().Add(-time.Hour).Truncate(time.Second)
	var ids []uint64
	for i, text := range []string{"第一条", "第二条", "=HYPERLINK(\"http://x\")", "第四条", "第五条"} {
		m := &queue.MO{Enterprise: "A", Source: uNumA2, Dest: "106575001", Text: text, Upstream: "sim", ReceivedAt: t0.Add(time.Duration(i) * time.Minute)}
		if i == 4 {
			m.Account, m.Extension, m.Dest, m.Source = "alice", "12", "10657500112", uNumA3
			m.OptOut = true // its text an opt-out keyword
		}
		if i == 0 {
			m.PartsMissing = 2 // a long reply stored at the timeout
		}
		if i == 3 {
			m.Text, m.Binary, m.DataCoding, m.UDH = "", []byte{0x01, 0xAB}, 0xF5, []byte{6, 5, 4, 0x23, 0xF4, 0x23, 0xF0} // binary, to port 9204 from 9200
		}
		if i <= 2 { // the first three came while A had a reply URL
			m.ReplyURL = "https://a.example/replies"
		}
		if err := r.store.StoreMO(t.Context(), m); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, m.ID)
	}
	if err := r.store.AckMO(t.Context(), "A", ids[1], time.Now(), false); err != nil { // 第二条 taken
		t.Fatal(err)
	}
	if err := r.store.AckMO(t.Context(), "A", ids[3], time.Now(), true); err != nil { // 第四条 refused
		t.Fatal(err)
	}
	// Their POSTs: 第一条's waits, 第二条's was delivered, the third's
	// given up.
	due, _, err := r.store.DueReplies("A", time.Now().Add(time.Hour), 0, nil)
	if err != nil || len(due) != 3 {
		t.Fatalf("due replies: %d (%v)", len(due), err)
	}
	postedAt := t0.Add(30 * time.Minute)
	if err := r.store.AckReplies(t.Context(), due[1:2], postedAt, false); err != nil {
		t.Fatal(err)
	}
	if err := r.store.AckReplies(t.Context(), due[2:3], time.Now(), true); err != nil {
		t.Fatal(err)
	}
	if err := r.store.StoreMO(t.Context(), &queue.MO{Enterprise: "B", Source: uNumA2, Dest: "106575002", Text: "乙公司的", Upstream: "sim", ReceivedAt: t0}); err != nil {
		t.Fatal(err)
	}
	code, body, tr := exportGet(t, r.url, "/v1/inbox/export", r.keys["amy"]) // A's admin
	rows, err := csv.NewReader(bytes.NewReader(body)).ReadAll()
	if code != http.StatusOK || err != nil || len(rows) != 6 || tr.Get(ExportRowsTrailer) != "5" || !strings.Contains(tr.Get("Content-Disposition"), `"inbox-A.csv"`) {
		t.Fatalf("export: %d (%v), trailers %v\n%s", code, err, tr, body)
	}
	var texts []string
	for _, row := range rows[1:] {
		texts = append(texts, row[5])
	}
	if want := []string{"第五条", "", "=HYPERLINK(\"http://x\")", "第二条", "第一条"}; !slices.Equal(texts, want) || rows[0][5] != "text" {
		t.Fatalf("texts %q, want %q", texts, want)
	}
	if rows[1][1] != uNumA3 || rows[1][3] != "12" || rows[1][4] != "alice" || rows[1][6] != t0.Add(4*time.Minute).UTC().Format(time.RFC3339) {
		t.Fatalf("the newest row %q", rows[1])
	}
	var answered [][]string // forwarded, refused: newest first
	for _, row := range rows {
		answered = append(answered, row[7:])
	}
	if want := [][]string{
		{"forwarded", "refused", "parts_missing", "binary", "data_coding", "udh", "source_port", "destination_port", "webhook", "webhook_at", "optout"},
		{"false", "false", "0", "", "", "", "", "", "", "", "true"},
		{"false", "true", "0", "01ab", "245", "06050423f423f0", "9200", "9204", "", "", "false"},
		{"false", "false", "0", "", "", "", "", "", "gave_up", "", "false"},
		{"true", "false", "0", "", "", "", "", "", "delivered", postedAt.UTC().Format(time.RFC3339), "false"},
		{"false", "false", "2", "", "", "", "", "", "pending", "", "false"},
	}; !slices.EqualFunc(answered, want, slices.Equal) {
		t.Fatalf("forwarded, refused, parts_missing, binary, webhook and optout columns %q, want %q", answered, want)
	}
	// The list says the same.
	var page InboxPage
	r.must(http.StatusOK, "GET", "/v1/inbox", r.keys["amy"], nil, &page)
	var states []string
	for _, it := range page.Replies {
		states = append(states, it.Webhook+"@"+exportTime(it.WebhookAt, false))
	}
	if want := []string{"@", "@", "gave_up@", "delivered@" + postedAt.UTC().Format(time.RFC3339), "pending@"}; !slices.Equal(states, want) {
		t.Fatalf("GET /v1/inbox: webhook states %q, want %q", states, want)
	}

	_, body, _ = exportGet(t, r.url, "/v1/inbox/export?lang=zh&number="+uNumA2, r.keys["amy"])
	rows, err = csv.NewReader(bytes.NewReader(bytes.TrimPrefix(body, []byte("\uFEFF")))).ReadAll()
	if err != nil || len(rows) != 5 || rows[0][1] != "来自" || rows[2][5] != "'=HYPERLINK(\"http://x\")" || rows[1][7] != "否" || rows[0][8] != "被拒收" || rows[1][8] != "是" || rows[3][7] != "是" ||
		rows[0][15] != "推送状态" || rows[2][15] != "已放弃" || rows[3][15] != "已推送" || rows[4][15] != "待推送" || rows[1][15] != "" ||
		rows[0][17] != "退订" || rows[1][17] != "否" {
		t.Fatalf("lang=zh, number=%s: %q (%v)", uNumA2, rows, err)
	}
	// alice (a user) sees the replies to her extension only.
	_, body, tr = exportGet(t, r.url, "/v1/inbox/export", r.keys["alice"])
	if !bytes.Contains(body, []byte("第五条")) || bytes.Contains(body, []byte("第四条")) || tr.Get(ExportRowsTrailer) != "1" {
		t.Fatalf("alice's export:\n%s", body)
	}
	if code, body, _ := exportGet(t, r.url, "/v1/inbox/export?number=abc", r.keys["amy"]); code != http.StatusBadRequest {
		t.Fatalf("number=abc: %d %s", code, body)
	}
}

// TestClusterExportInbox: in a cluster the inbox's export merges the
// nodes' replies (two pages of 2 from three nodes); a node down is a 503
// before any row.
func TestClusterExportInbox(t *testing.T) {
	t0 := time.Date(2026, 10, 1, 8, 0, 0, 0, time.UTC)
	p := &synthetic{self: 9, nodes: map[uint16]*fakeNode{
		1: {replies: replies(1, 3, t0, 2*time.Second)},
		2: {replies: replies(2, 4, t0.Add(time.Second), 2*time.Second)},
	}}
	s := newSyntheticServer(t, p)
	s.user.exportPage = 2
	c := &caller{user: &policy.User{SystemID: "u", Enterprise: "G1", Role: policy.RoleAdmin}, ent: &policy.Enterprise{Code: "G1"}}
	get := func() *httptest.ResponseRecorder {
		w := httptest.NewRecorder()
		s.exportInbox(c, w, httptest.NewRequest(http.MethodGet, "/v1/inbox/export", nil))
		return w
	}
	w := get()
	rows, err := csv.NewReader(w.Body).ReadAll()
	if err != nil || w.Code != http.StatusOK {
		t.Fatalf("%d (%v)", w.Code, err)
	}
	var ids []string
	for _, row := range rows[1:] {
		ids = append(ids, row[0])
	}
	if want := wantOrder(p); !slices.Equal(ids, want) || w.Result().Trailer.Get(ExportRowsTrailer) != "7" {
		t.Fatalf("ids %v, want %v", ids, want)
	}
	p.mu.Lock()
	p.nodes[2].down = true
	p.mu.Unlock()
	if w := get(); w.Code != http.StatusServiceUnavailable || strings.Contains(w.Body.String(), "received_at") {
		t.Fatalf("a node down: %d %s", w.Code, w.Body)
	}
}

// TestExportScheduled: GET /v1/scheduled/export writes the messages that
// wait for their send time, narrowed by when they go out (send_from,
// send_to), named by that range; the sent outbox's export has none of them.
func TestExportScheduled(t *testing.T) {
	r := newUserRig(t)
	day := time.Now().Add(48 * time.Hour).Truncate(24 * time.Hour)
	r.send(r.keys["alice"], SendRequest{To: []string{uNumA1}, Text: "后天", SendAt: day.Add(2 * time.Hour).Format(time.RFC3339)})
	r.send(r.keys["alice"], SendRequest{To: []string{uNumA1}, Text: "大后天", SendAt: day.Add(26 * time.Hour).Format(time.RFC3339)})
	q := "send_from=" + day.Format(time.RFC3339) + "&send_to=" + day.Add(24*time.Hour).Format(time.RFC3339)
	code, body, tr := exportGet(t, r.url, "/v1/scheduled/export?"+q, r.keys["alice"])
	rows, err := csv.NewReader(bytes.NewReader(body)).ReadAll()
	if code != http.StatusOK || err != nil || len(rows) != 2 || !strings.Contains(rows[1][4], "后天") || strings.Contains(string(body), "大后天") ||
		rows[1][9] != day.Add(2*time.Hour).UTC().Format(time.RFC3339) || tr.Get(ExportRowsTrailer) != "1" ||
		!strings.Contains(tr.Get("Content-Disposition"), `"scheduled-A-from-`) {
		t.Fatalf("scheduled export: %d (%v), %v\n%s", code, err, tr, body)
	}
	if _, body, _ := exportGet(t, r.url, "/v1/messages/export", r.keys["alice"]); bytes.Contains(body, []byte("后天")) {
		t.Fatalf("the sent outbox's export has scheduled messages:\n%s", body)
	}
}

// TestExportTimeBound: an export that runs past its time (MaxExportTime,
// shortened here) is cut as a failure is: the client's read fails, no
// trailer says the file is complete, and its slot is given back.
func TestExportTimeBound(t *testing.T) {
	r := newUserRig(t)
	r.srv.user.exportPage, r.srv.user.exportMaxTime = 1, time.Nanosecond
	for _, text := range []string{"一", "二", "三"} {
		r.send(r.keys["alice"], SendRequest{To: []string{uNumA1}, Text: text})
	}
	req, _ := http.NewRequest(http.MethodGet, r.url+"/v1/messages/export", nil)
	req.Header.Set("Authorization", "Bearer "+r.keys["alice"])
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err == nil || resp.Trailer.Get(ExportRowsTrailer) != "" || bytes.Count(body, []byte("\n")) > 2 {
		t.Fatalf("an export past its time: read %v, trailers %v, body\n%s", err, resp.Trailer, body)
	}
	for range MaxExportsPerEnterprise { // the cut export's slot is free again
		release, refused := r.srv.user.exports.take("A")
		if release == nil {
			t.Fatalf("a slot after the cut export: %s", refused)
		}
	}
}
