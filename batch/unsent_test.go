package batch

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"testing"
	"time"
)

// TestUnsentRows: a cancelled job lists which rows it read and did not
// send, as ranges: every row it read is either stored (sent) or in
// them, never both, and the list holds over a restart. The rows unsent
// are not always the last ones read (calls in flight end in any order),
// so a count alone would not tell a user which rows to send again.
func TestUnsentRows(t *testing.T) {
	s := newStoreRig(t)
	r := s.runner(nil)
	j, _ := s.start(r, 40)
	waitAccepted(t, j, 3)
	if _, err := j.Cancel(); err != nil {
		t.Fatal(err)
	}
	waitDone(t, j)
	p := j.Progress(false)
	if p.State != JobCancelled || p.Unsent == 0 || p.Refused != 0 {
		t.Fatalf("cancelled: %+v, want some rows unsent, none refused", p)
	}
	unsent := map[int]bool{}
	for _, rg := range p.UnsentRows {
		for row := rg.From; row <= rg.To; row++ {
			unsent[row] = true
		}
	}
	if len(unsent) != p.Unsent || p.UnsentRowsCut {
		t.Fatalf("unsent rows %v: %d rows, want the %d counted", p.UnsentRows, len(unsent), p.Unsent)
	}
	// The rows stored, from their texts (第N条).
	jobs, err := s.store.Due(time.Now().Add(time.Hour), 1000, nil)
	if err != nil {
		t.Fatal(err)
	}
	rowOf := regexp.MustCompile(`第(\d+)条`)
	var sent []int
	for _, dj := range jobs {
		m, err := s.store.Get(dj.Key.ID)
		if err != nil {
			t.Fatal(err)
		}
		n, _ := strconv.Atoi(rowOf.FindStringSubmatch(m.Text)[1])
		sent = append(sent, n)
	}
	slices.Sort(sent)
	if len(sent) != p.Accepted {
		t.Fatalf("%d rows stored, %d accepted", len(sent), p.Accepted)
	}
	for _, n := range sent {
		if unsent[n] {
			t.Errorf("row %d is stored and listed unsent", n)
		}
	}
	for row := 1; row <= p.RowsRead; row++ {
		if !unsent[row] && !slices.Contains(sent, row) {
			t.Errorf("row %d read, neither sent nor listed unsent", row)
		}
	}
	r.Close()
	if again := s.resumed(j.ID()).Progress(false); !slices.Equal(again.UnsentRows, p.UnsentRows) {
		t.Fatalf("after a restart: unsent rows %v, want %v", again.UnsentRows, p.UnsentRows)
	}
}

// TestMergeRanges: the ranges of unsent rows, as calls in flight give
// them in any order, are listed sorted with neighbours joined.
func TestMergeRanges(t *testing.T) {
	got := mergeRanges([]RowRange{{9, 9}, {3, 4}, {5, 7}, {12, 15}, {10, 10}, {1, 1}})
	want := []RowRange{{1, 1}, {3, 7}, {9, 10}, {12, 15}}
	if !slices.Equal(got, want) {
		t.Fatalf("merged %v, want %v", got, want)
	}
	if mergeRanges(nil) != nil {
		t.Fatal("no ranges merged into some")
	}
}

// TestUnsentBefore: a job ended at a restart lists as unsent the rows of
// its file, up to the last its stored calls sent, that none of them sent
// (their calls were in flight at the stop); not a blank line (never a
// row), not a row its reader refused (stored with a call), not a row
// past the last sent (not known to have been read).
func TestUnsentBefore(t *testing.T) {
	path := filepath.Join(t.TempDir(), "job.csv")
	file := "13800138000,第1条\n\n13800138000,第3条\n13800138000,第4条\n,空号\n13800138000,第6条\n13800138000,第7条\n13800138000,第8条\n"
	if err := os.WriteFile(path, []byte(file), 0o600); err != nil {
		t.Fatal(err)
	}
	r := New(Config{})
	defer r.Close()
	j := &Job{id: "j"}
	r.unsentBefore(j, &jobRecord{Path: path}, []int32{1, 5, 6}, RowsOptions{})
	p := j.progress(false, true)
	if p.Unsent != 2 || !slices.Equal(p.UnsentRows, []RowRange{{3, 4}}) {
		t.Fatalf("unsent %d, rows %v; want 2, [3–4]", p.Unsent, p.UnsentRows)
	}
	// Nothing sent: nothing known read; a file gone: nothing listed.
	j = &Job{id: "j"}
	r.unsentBefore(j, &jobRecord{Path: path}, nil, RowsOptions{})
	r.unsentBefore(j, &jobRecord{Path: path + ".gone"}, []int32{1, 6}, RowsOptions{})
	if p := j.progress(false, true); p.Unsent != 0 || p.UnsentRows != nil {
		t.Fatalf("unsent %d, rows %v; want none", p.Unsent, p.UnsentRows)
	}
}
