package queue

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"
)

// exportMsg is a message of enterprise ent accepted at at, with parts parts.
func exportMsg(ent, account string, at time.Time, parts int) *Message {
	m := msg(account, "13800138000", parts)
	m.Enterprise, m.AcceptedAt = ent, at
	return m
}

// drive moves the parts of the stored message m to states (one per part):
// Accepted stays; Submitted gets an SMSC id; Rejected is failed before
// submission; any other final state is submitted and then receives a DLR
// done at doneAt.
func (ts *testStore) drive(m *Message, doneAt time.Time, states ...State) {
	ts.t.Helper()
	for i, st := range states {
		k := Key{m.ID, uint16(i)}
		switch st {
		case StateAccepted:
		case StateRejected:
			if err := ts.Fail(bg, k, StateRejected, "0x00000045", doneAt); err != nil {
				ts.t.Fatal(err)
			}
		default:
			id := fmt.Sprintf("s%d-%d", m.ID, i)
			if err := ts.Submitted(bg, k, id, m.AcceptedAt.Add(time.Second)); err != nil {
				ts.t.Fatal(err)
			}
			if st == StateSubmitted {
				continue
			}
			_, err := ts.ApplyDLR(bg, DLR{Upstream: m.Upstream, SMSCID: id, State: st, ErrCode: "000", DoneAt: doneAt})
			if err != nil {
				ts.t.Fatal(err)
			}
		}
	}
}

// exportAll collects the rows of a window.
func (ts *testStore) exportAll(from, to time.Time, ent string) []Row {
	ts.t.Helper()
	var rows []Row
	if err := ts.ExportParts(from, to, ent, func(r Row) error { rows = append(rows, r); return nil }); err != nil {
		ts.t.Fatalf("export: %v", err)
	}
	return rows
}

func rowIDs(rows []Row) []string {
	out := make([]string, len(rows))
	for i, r := range rows {
		out[i] = fmt.Sprintf("%d/%d", r.ID, r.Part)
	}
	return out
}

func TestExportWindowAndRows(t *testing.T) {
	s := newStore(t, Options{NoSync: true})
	nov := time.Date(2026, 11, 1, 0, 0, 0, 0, shanghai)
	dec := time.Date(2026, 12, 1, 0, 0, 0, 0, shanghai)
	before := exportMsg("G1", "alice", nov.Add(-time.Nanosecond), 1) // October in Shanghai
	first := exportMsg("G1", "alice", nov, 3)                        // the first instant of November
	other := exportMsg("G2", "bob", nov.Add(time.Hour), 1)
	last := exportMsg("G1", "alice", dec.Add(-time.Nanosecond), 2)
	after := exportMsg("G1", "alice", dec, 1)
	s.enqueue(before, first, other, last, after)
	s.drive(first, dec.Add(time.Hour), StateDelivered, StateUndeliverable, StateSubmitted) // DLR in December
	s.drive(other, nov.Add(2*time.Hour), StateRejected)
	s.drive(last, dec.Add(time.Minute), StateDelivered, StateDelivered)

	rows := s.exportAll(nov, dec, "")
	want := []string{
		fmt.Sprintf("%d/1", first.ID), fmt.Sprintf("%d/2", first.ID), fmt.Sprintf("%d/3", first.ID),
		fmt.Sprintf("%d/1", other.ID), fmt.Sprintf("%d/1", last.ID), fmt.Sprintf("%d/2", last.ID),
	}
	if got := rowIDs(rows); !slices.Equal(got, want) {
		t.Fatalf("rows %v, want %v", got, want)
	}
	r := rows[0]
	if r.Parts != 3 || r.Enterprise != "G1" || r.Account != "alice" || r.Source != "10657" || r.Dest != "13800138000" ||
		r.Upstream != "up1" || r.SMSCID != fmt.Sprintf("s%d-0", first.ID) || !r.AcceptedAt.Equal(nov) ||
		!r.SubmittedAt.Equal(nov.Add(time.Second)) || !r.DoneAt.Equal(dec.Add(time.Hour)) ||
		r.State != StateDelivered || r.ErrCode != "000" || !r.Billed {
		t.Errorf("row 0: %+v", r)
	}
	if r := rows[1]; r.State != StateUndeliverable || r.Billed {
		t.Errorf("row 1: %+v", r)
	}
	if r := rows[2]; r.State != StateSubmitted || r.Billed || !r.DoneAt.IsZero() {
		t.Errorf("row 2: %+v", r)
	}
	if r := rows[3]; r.State != StateRejected || r.Billed || r.ErrCode != "0x00000045" || !r.SubmittedAt.IsZero() || r.SMSCID != "" {
		t.Errorf("row 3: %+v", r)
	}

	if got := rowIDs(s.exportAll(nov, dec, "G2")); !slices.Equal(got, []string{fmt.Sprintf("%d/1", other.ID)}) {
		t.Errorf("G2 rows: %v", got)
	}
	if got := s.exportAll(nov, dec, "G"); len(got) != 0 {
		t.Errorf("prefix of an enterprise matched: %v", rowIDs(got))
	}
	if got := s.exportAll(time.Time{}, time.Time{}, ""); len(got) != 8 {
		t.Errorf("unbounded export: %d rows", len(got))
	}
	if got := s.exportAll(dec, time.Time{}, ""); len(got) != 1 || got[0].ID != after.ID {
		t.Errorf("from December on: %v", rowIDs(got))
	}
	if got := s.exportAll(time.Time{}, nov, ""); len(got) != 1 || got[0].ID != before.ID {
		t.Errorf("before November: %v", rowIDs(got))
	}
	if got := s.exportAll(nov, nov, ""); len(got) != 0 {
		t.Errorf("empty window: %v", rowIDs(got))
	}
	if err := s.ExportParts(dec, nov, "", func(Row) error { return nil }); !errors.Is(err, ErrInvalid) {
		t.Errorf("reversed window: %v", err)
	}
	if again := s.exportAll(nov, dec, ""); !slices.EqualFunc(again, rows, func(a, b Row) bool { return fmt.Sprint(a) == fmt.Sprint(b) }) {
		t.Error("a second export of the same window differs")
	}
	stop := errors.New("stop")
	n := 0
	if err := s.ExportParts(nov, dec, "", func(Row) error { n++; return stop }); err != stop || n != 1 {
		t.Errorf("callback error: %v after %d rows", err, n)
	}
}

func TestExportFormats(t *testing.T) {
	at := time.Date(2026, 11, 25, 6, 59, 3, 123456789, time.UTC)
	rows := []Row{
		{ID: 42, Part: 1, Parts: 2, Enterprise: "G1", Account: "alice", Source: "10657", Dest: "13800138000",
			Upstream: "cmcc", SMSCID: "0A1B", AcceptedAt: at, SubmittedAt: at.Add(time.Second), DoneAt: at.Add(time.Minute),
			State: StateDelivered, ErrCode: "000", Billed: true, Segments: 1},
		{ID: 2<<48 | 42, Part: 2, Parts: 2, Enterprise: "G1", Account: "alice", Source: "a,\"b\"", Dest: "13800138000",
			Upstream: "cmcc", AcceptedAt: at, State: StateAccepted, Segments: 3},
	}
	var buf bytes.Buffer
	rw, err := NewRowWriter(&buf, FormatCSV)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rows {
		if err := rw.Write(r); err != nil {
			t.Fatal(err)
		}
	}
	if err := rw.Flush(); err != nil {
		t.Fatal(err)
	}
	wantCSV := "id,part,parts,enterprise,account,source,dest,upstream,smsc_id,accepted_at,submitted_at,done_at,state,err_code,billed,segments,node\n" +
		"42,1,2,G1,alice,10657,13800138000,cmcc,0A1B,2026-11-25T14:59:03.123+08:00,2026-11-25T14:59:04.123+08:00,2026-11-25T15:00:03.123+08:00,delivered,000,true,1,0\n" +
		"562949953421354,2,2,G1,alice,\"a,\"\"b\"\"\",13800138000,cmcc,,2026-11-25T14:59:03.123+08:00,,,accepted,,false,3,2\n"
	if buf.String() != wantCSV {
		t.Errorf("CSV:\n%s\nwant:\n%s", buf.String(), wantCSV)
	}
	recs, err := csv.NewReader(strings.NewReader(buf.String())).ReadAll()
	if err != nil || len(recs) != 3 || recs[2][5] != `a,"b"` {
		t.Errorf("CSV does not read back: %v %q", err, recs)
	}

	buf.Reset()
	rw, _ = NewRowWriter(&buf, FormatJSONL)
	for _, r := range rows {
		if err := rw.Write(r); err != nil {
			t.Fatal(err)
		}
	}
	if err := rw.Flush(); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(buf.String(), "\n"), "\n")
	wantFirst := `{"id":42,"part":1,"parts":2,"enterprise":"G1","account":"alice","source":"10657","dest":"13800138000","upstream":"cmcc","smsc_id":"0A1B","accepted_at":"2026-11-25T14:59:03.123+08:00","submitted_at":"2026-11-25T14:59:04.123+08:00","done_at":"2026-11-25T15:00:03.123+08:00","state":"delivered","err_code":"000","billed":true,"segments":1,"node":0}`
	if len(lines) != 2 || lines[0] != wantFirst {
		t.Errorf("JSONL:\n%s\nwant first line:\n%s", buf.String(), wantFirst)
	}
	var obj map[string]any
	if err := json.Unmarshal([]byte(lines[1]), &obj); err != nil || obj["done_at"] != nil || obj["source"] != `a,"b"` || obj["node"] != 2.0 {
		t.Errorf("JSONL line 2: %v %v", err, obj)
	}
	var keys []string
	dec := json.NewDecoder(strings.NewReader(lines[0]))
	dec.Token()
	for dec.More() {
		k, _ := dec.Token()
		keys = append(keys, k.(string))
		var v any
		dec.Decode(&v)
	}
	if !slices.Equal(keys, ExportColumns) {
		t.Errorf("JSONL keys %v, want %v", keys, ExportColumns)
	}
	if _, err := NewRowWriter(&buf, "xml"); !errors.Is(err, ErrInvalid) {
		t.Errorf("unknown format: %v", err)
	}
}

// TestExportOutOfOrderAcceptance: ids do not follow AcceptedAt exactly
// (jitter below ExportSkew, purged gaps); every window still gives exactly
// the messages accepted in it, as a brute-force filter over all messages.
func TestExportOutOfOrderAcceptance(t *testing.T) {
	s := newStore(t, Options{NoSync: true})
	rng := rand.New(rand.NewPCG(7, 7))
	base := time.Date(2026, 11, 1, 0, 0, 0, 0, shanghai)
	var all []*Message
	var batch []*Message
	for i := range 3000 {
		jitter := time.Duration(rng.Int64N(int64(ExportSkew))) - ExportSkew/2 // ids i < j: at(j) > at(i) - ExportSkew
		m := exportMsg(fmt.Sprintf("G%d", i%3), "a", base.Add(time.Duration(i)*time.Minute+jitter), 1+i%2)
		m.RegisteredDelivery = 0 // final = forwarded: purgeable
		batch = append(batch, m)
		all = append(all, m)
		if len(batch) == 500 {
			s.enqueue(batch...)
			batch = batch[:0]
		}
	}
	// Purge a run of early messages to leave a gap in the ids.
	for _, m := range all[100:400] {
		s.drive(m, m.AcceptedAt, slices.Repeat([]State{StateRejected}, len(m.Parts))...)
	}
	if n, err := s.Purge(bg, base.Add(400*time.Minute-ExportSkew), 250); err != nil || n != 250 {
		t.Fatalf("purge: %d %v", n, err)
	}
	var left []*Message
	for _, m := range all {
		if _, err := s.Get(m.ID); err == nil {
			left = append(left, m)
		}
	}
	for range 60 {
		from := base.Add(time.Duration(rng.Int64N(3200)-100) * time.Minute).Add(time.Duration(rng.Int64N(60)) * time.Second)
		to := from.Add(time.Duration(rng.Int64N(600)) * time.Minute)
		ent := ""
		if rng.IntN(2) == 0 {
			ent = "G1"
		}
		var want []string
		for _, m := range left {
			if !m.AcceptedAt.Before(from) && m.AcceptedAt.Before(to) && (ent == "" || m.Enterprise == ent) {
				for i := range m.Parts {
					want = append(want, fmt.Sprintf("%d/%d", m.ID, i+1))
				}
			}
		}
		if got := rowIDs(s.exportAll(from, to, ent)); !slices.Equal(got, want) {
			t.Fatalf("window [%v, %v) %q: %d rows, want %d", from, to, ent, len(got), len(want))
		}
	}
}

// TestExportMatchesUsage: the billed rows of a month's export, per
// enterprise, are the store's charged usage of that month — with
// delivered, failed and pending parts, receipts arriving next month and
// messages accepted on both sides of the month boundaries.
func TestExportMatchesUsage(t *testing.T) {
	s := newStore(t, Options{NoSync: true})
	rng := rand.New(rand.NewPCG(3, 9))
	nov := time.Date(2026, 11, 1, 0, 0, 0, 0, shanghai)
	dec := time.Date(2026, 12, 1, 0, 0, 0, 0, shanghai)
	states := []State{StateAccepted, StateSubmitted, StateDelivered, StateDelivered, StateDelivered,
		StateUndeliverable, StateExpired, StateRejected, StateUnknown}
	// Acceptance times from late October to early December, in id order
	// (as the gateway accepts them), with some on the boundaries.
	var times []time.Time
	for i := range 240 {
		var at time.Time
		switch i % 4 {
		case 0:
			at = nov.Add(-time.Duration(rng.Int64N(int64(2 * time.Hour)))) // late October
		case 1:
			at = dec.Add(time.Duration(rng.Int64N(int64(2 * time.Hour)))) // early December
		default:
			at = nov.Add(time.Duration(rng.Int64N(int64(dec.Sub(nov)))))
		}
		switch i % 100 {
		case 10, 11:
			at = nov
		case 20, 21:
			at = dec.Add(-time.Nanosecond)
		case 30:
			at = dec
		}
		times = append(times, at)
	}
	slices.SortFunc(times, time.Time.Compare)
	for _, at := range times {
		m := exportMsg(fmt.Sprintf("G%d", rng.IntN(3)), "acct", at, 1+rng.IntN(4))
		s.enqueue(m)
		var st []State
		for range m.Parts {
			st = append(st, states[rng.IntN(len(states))])
		}
		s.drive(m, at.Add(time.Duration(rng.Int64N(int64(48*time.Hour)))), st...)
	}
	for _, ent := range []string{"G0", "G1", "G2"} {
		var billed, pending int64
		err := s.ExportParts(nov, dec, ent, func(r Row) error {
			if r.Billed {
				billed++
			}
			if !r.State.Final() {
				pending++
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		reserved, charged := s.Usage(ent, "2026-11")
		if billed != charged || pending != reserved || charged == 0 || reserved == 0 {
			t.Errorf("%s: export billed %d pending %d, usage charged %d reserved %d", ent, billed, pending, charged, reserved)
		}
	}
	use, err := s.UsageByMonth("2026-11")
	if err != nil || len(use) != 3 || use[0].Enterprise != "G0" || use[2].Enterprise != "G2" {
		t.Fatalf("usage by month: %v %+v", err, use)
	}
	for _, u := range use {
		if r, c := s.Usage(u.Enterprise, "2026-11"); r != u.Reserved || c != u.Charged || u.PurgedCharged != 0 {
			t.Errorf("%+v vs %d %d", u, r, c)
		}
	}
}

// TestExportDuringWrites: an export runs while writers commit; each
// callback runs with no read transaction open, and the rows come in id
// order without gaps for what existed before.
func TestExportDuringWrites(t *testing.T) {
	s := newStore(t, Options{NoSync: true})
	base := time.Date(2026, 11, 2, 0, 0, 0, 0, shanghai)
	var batch []*Message
	for i := range 5000 {
		batch = append(batch, exportMsg("G1", "a", base.Add(time.Duration(i)*time.Second), 1))
	}
	s.enqueue(batch...)
	first, last := batch[0].ID, batch[len(batch)-1].ID
	var prev Row
	n := 0
	err := s.ExportParts(time.Time{}, time.Time{}, "", func(r Row) error {
		if open := s.db.Stats().OpenTxN; open != 0 {
			return fmt.Errorf("%d read transactions open during the callback", open)
		}
		if n%1000 == 0 { // a write commits while the export is paused in the callback
			s.enqueue(exportMsg("G1", "a", time.Now(), 1))
		}
		if n > 0 && (r.ID < prev.ID || r.ID == prev.ID && r.Part <= prev.Part) {
			return fmt.Errorf("row %d/%d after %d/%d", r.ID, r.Part, prev.ID, prev.Part)
		}
		if r.ID <= last && r.ID != first+uint64(n) {
			return fmt.Errorf("row %d: want id %d", n, first+uint64(n))
		}
		prev = r
		n++
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if n < 5000 {
		t.Errorf("%d rows", n)
	}
}

// TestExportStreamingMemory exports 100k rows counting them and checks that
// the live heap stays flat: rows are read in chunks, never all at once.
func TestExportStreamingMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("100k messages")
	}
	// 20,000 messages of 5 parts: 100,000 rows. A plain store (no Check at
	// cleanup: other tests cover consistency) keeps the test fast under -race.
	const msgs, parts, total = 20_000, 5, 100_000
	s, err := Open(filepath.Join(t.TempDir(), "q.db"), Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	base := time.Date(2026, 11, 1, 0, 0, 0, 0, shanghai)
	fillExport(t, s, base, msgs, parts)
	var ms runtime.MemStats
	runtime.GC()
	runtime.GC() // and what sync.Pools kept through the first
	runtime.ReadMemStats(&ms)
	baseline, peak := ms.HeapAlloc, ms.HeapAlloc
	n := 0
	start := time.Now()
	err = s.ExportParts(base, base.Add(msgs*time.Second), "", func(r Row) error {
		n++
		if n%20_000 == 0 {
			runtime.GC()
			runtime.ReadMemStats(&ms)
			peak = max(peak, ms.HeapAlloc)
		}
		return nil
	})
	elapsed := time.Since(start)
	if err != nil {
		t.Fatal(err)
	}
	if n != total {
		t.Fatalf("%d rows, want %d", n, total)
	}
	growth := int64(peak) - int64(baseline)
	t.Logf("exported %d rows in %v (%.0f rows/s, GC samples included); live heap %d KiB → peak %d KiB (+%d KiB)",
		n, elapsed.Round(time.Millisecond), float64(n)/elapsed.Seconds(), baseline>>10, peak>>10, growth>>10)
	// Holding the rows would take 100,000 × unsafe.Sizeof(Row{}) ≈ 20 MB
	// plus their strings; a chunk is at most 4096+255 rows.
	if growth > 4<<20 {
		t.Errorf("live heap grew by %d KiB while streaming", growth>>10)
	}
}

// fillExport stores msgs messages of parts parts, one a second from base.
func fillExport(t *testing.T, s *Store, base time.Time, msgs, parts int) {
	for i := 0; i < msgs; {
		batch := make([]*Message, 0, 5000)
		for ; len(batch) < cap(batch) && i < msgs; i++ {
			batch = append(batch, exportMsg("G1", "alice", base.Add(time.Duration(i)*time.Second), parts))
		}
		if err := s.Enqueue(bg, batch...); err != nil {
			t.Fatal(err)
		}
	}
}

func benchMsgAt(i int, at time.Time) *Message {
	m := benchMsg(i)
	m.AcceptedAt = at
	return m
}

// BenchmarkExportParts: rows/s of a CSV export of 100k one-part messages
// to io.Discard.
func BenchmarkExportParts(b *testing.B) {
	const total = 100_000
	s := openBench(b, Options{NoSync: true})
	base := time.Date(2026, 11, 1, 0, 0, 0, 0, shanghai)
	for i := 0; i < total; {
		batch := make([]*Message, 0, 5000)
		for ; len(batch) < cap(batch) && i < total; i++ {
			batch = append(batch, benchMsgAt(i, base.Add(time.Duration(i)*time.Second)))
		}
		if err := s.Enqueue(bg, batch...); err != nil {
			b.Fatal(err)
		}
	}
	for _, format := range []string{"", FormatCSV, FormatJSONL} {
		name := format
		if name == "" {
			name = "count"
		}
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				var rw *RowWriter
				if format != "" {
					rw, _ = NewRowWriter(discard{}, format)
				}
				n := 0
				err := s.ExportParts(base, base.Add(total*time.Second), "", func(r Row) error {
					n++
					if rw != nil {
						return rw.Write(r)
					}
					return nil
				})
				if err != nil || n != total {
					b.Fatal(n, err)
				}
				if rw != nil {
					rw.Flush()
				}
			}
			b.ReportMetric(float64(total*b.N)/b.Elapsed().Seconds(), "rows/s")
		})
	}
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }
