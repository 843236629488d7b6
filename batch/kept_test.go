package batch

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"
	"unsafe"

	"github.com/qxtd/qxtd/sheet"
)

// within reports whether sub's bytes lie inside s's: a substring, which
// keeps the whole of s alive.
func within(sub, s string) bool {
	p, b := uintptr(unsafe.Pointer(unsafe.StringData(sub))), uintptr(unsafe.Pointer(unsafe.StringData(s)))
	return len(sub) > 0 && p >= b && p < b+uintptr(len(s))
}

// TestClip: cut at a rune boundary with "…", at most n bytes, and always
// a copy (a short cell of a CSV row is a substring of the whole row).
func TestClip(t *testing.T) {
	for _, tc := range []struct {
		in   string
		n    int
		want string
	}{
		{"13800138000", 32, "13800138000"},
		{"", 32, ""},
		{strings.Repeat("1", 40), 32, strings.Repeat("1", 29) + "…"},
		{strings.Repeat("名", 20), 32, strings.Repeat("名", 9) + "…"}, // 29 bytes would split the 10th
		{"😀😀", 6, "…"},                      // not half an emoji
		{"ab\x80\x80\x80\x80\x80", 6, "a…"}, // invalid UTF-8: at most 3 bytes more given up
		{"abcdef", 2, ""},
	} {
		got := Clip(tc.in, tc.n)
		if got != tc.want || len(got) > tc.n {
			t.Errorf("Clip(%q, %d) = %q, want %q", tc.in, tc.n, got, tc.want)
		}
		if utf8.ValidString(tc.in) && !utf8.ValidString(got) {
			t.Errorf("Clip(%q, %d) = %q: not UTF-8", tc.in, tc.n, got)
		}
	}
	row := "13800138000," + strings.Repeat("x", 1<<20)
	if within(Clip(row[:11], 32), row) || within(Clip(row, 32), row) {
		t.Error("Clip returned a substring: it keeps the whole row")
	}
}

// TestRowErrorsKept: what a job keeps of its refused rows is copies cut
// short, at most MaxJobErrorBytes of them, counted in full beyond; read
// from a real CSV file whose rows are 1 MiB.
func TestRowErrorsKept(t *testing.T) {
	var file strings.Builder
	filler := strings.Repeat("x", 32<<10-1)
	const rows = 40
	for i := range rows {
		// Column A a long number, column B empty: refused, empty_text.
		fmt.Fprintf(&file, "138%08d%s,", i, strings.Repeat("9", 100))
		for range 30 {
			file.WriteString("," + filler)
		}
		file.WriteString("\n")
	}
	rs, err := OpenRows(&closeCounter{Reader: strings.NewReader(file.String())}, RowsOptions{Format: sheet.CSV})
	if err != nil {
		t.Fatal(err)
	}
	defer rs.Close()
	j := &Job{}
	var numbers []string
	for {
		row, err := rs.Next()
		if err != nil {
			break
		}
		if row.Reason != "empty_text" || len(row.Number) != 111 {
			t.Fatalf("row %+v", row)
		}
		numbers = append(numbers, row.Number)
		j.rowError(RowError{Row: row.N, Number: row.Number, Reason: row.Reason, Message: row.Message})
	}
	if j.errCount != rows || len(j.errs) != rows {
		t.Fatalf("%d errors, %d kept", j.errCount, len(j.errs))
	}
	for i, e := range j.errs {
		if len(e.Number) > maxKeptNumber || !strings.HasPrefix(e.Number, fmt.Sprintf("138%08d", i)) || within(e.Number, numbers[i]) {
			t.Fatalf("row %d kept %q: not a short copy", e.Row, e.Number)
		}
	}

	// Messages that quote the file (a long header, field name or cell):
	// each cut to maxKeptMessage, and the list stops at MaxJobErrorBytes.
	j = &Job{}
	long := "empty field {" + strings.Repeat("名", 2000) + "}"
	const n = 5000
	for i := range n {
		j.rowError(RowError{Row: i + 2, Number: strings.Repeat("1", 1000), Reason: "empty_field", Message: long})
	}
	p := j.Progress(true)
	if p.ErrorCount != n || p.Refused != n || !p.ErrorsCut || len(p.Errors) == 0 || len(p.Errors) >= MaxJobErrors {
		t.Fatalf("count %d refused %d cut %v listed %d", p.ErrorCount, p.Refused, p.ErrorsCut, len(p.Errors))
	}
	kept := 0
	for _, e := range p.Errors {
		if len(e.Message) > maxKeptMessage || !utf8.ValidString(e.Message) || len(e.Number) > maxKeptNumber {
			t.Fatalf("kept %d-byte message, %d-byte number", len(e.Message), len(e.Number))
		}
		kept += rowErrorSize + len(e.Number) + len(e.Reason) + len(e.Code) + len(e.Message)
	}
	if kept > MaxJobErrorBytes || kept < MaxJobErrorBytes-1024 {
		t.Fatalf("%d errors keep %d bytes (budget %d)", len(p.Errors), kept, MaxJobErrorBytes)
	}

	// Below the bounds nothing is cut, nothing is flagged.
	j = &Job{}
	j.rowError(RowError{Row: 2, Number: "13800138000", Reason: "empty_text", Message: "empty text (column B)"})
	if p := j.Progress(true); p.ErrorsCut || len(p.Errors) != 1 || p.Errors[0].Number != "13800138000" {
		t.Fatalf("%+v", p)
	}
}

// TestHeadBounded: a staged upload's columns and first rows are at most
// sheet.MaxColumns wide, each cell at most HeadCellBytes, HeadMaxBytes in
// all; a wider header is the sheet's ErrLimit.
func TestHeadBounded(t *testing.T) {
	csvOf := func(cols int, header, cell string, rows int) []byte {
		var b bytes.Buffer
		for r := range rows + 1 {
			for c := range cols {
				if c > 0 {
					b.WriteByte(',')
				}
				if r == 0 {
					fmt.Fprintf(&b, "%d%s", c, header)
				} else {
					b.WriteString(cell)
				}
			}
			b.WriteByte('\n')
		}
		return b.Bytes()
	}
	head := func(file []byte) ([]string, [][]string, bool, error) {
		return Head(&closeCounter{Reader: bytes.NewReader(file)}, RowsOptions{Format: sheet.CSV}, 5)
	}

	// A million commas in the header: refused, not a million columns.
	_, _, _, err := head([]byte("号码,金额" + strings.Repeat(",", 1<<20-64) + "\n13800138000,1\n"))
	var se *sheet.Error
	if !errors.Is(err, sheet.ErrLimit) || !errors.As(err, &se) || se.Row != 1 {
		t.Fatalf("1M columns: %v", err)
	}
	if _, _, _, err := head(csvOf(sheet.MaxColumns+1, "", "1", 1)); !errors.Is(err, sheet.ErrLimit) {
		t.Fatalf("%d columns: %v", sheet.MaxColumns+1, err)
	}

	kept := func(h []string, rows [][]string) int {
		size := 0
		for _, r := range append(rows, h) {
			for _, c := range r {
				if len(c) > HeadCellBytes || !utf8.ValidString(c) {
					t.Fatalf("cell %q", c)
				}
				size += len(c)
			}
		}
		return size
	}
	// 1,024 columns of 900-byte names: each name cut, the header whole,
	// (almost) no room for rows.
	h, rows, cut, err := head(csvOf(sheet.MaxColumns, strings.Repeat("名", 300), "1", 5))
	if err != nil || len(h) != sheet.MaxColumns || len(rows) > 1 || !cut || !strings.HasSuffix(h[7], "…") {
		t.Fatalf("long names: %d columns, %d rows, cut %v, %v", len(h), len(rows), cut, err)
	}
	if size := kept(h, rows); size > HeadMaxBytes {
		t.Fatalf("long names: %d bytes kept", size)
	}
	// Short names, 60-byte cells: the rows that fit, each padded to the
	// header.
	h, rows, cut, err = head(csvOf(sheet.MaxColumns, "", strings.Repeat("x", 60), 5))
	if err != nil || !cut || len(rows) != 4 || len(rows[3]) != sheet.MaxColumns {
		t.Fatalf("60-byte cells: %d rows, cut %v, %v", len(rows), cut, err)
	}
	if size := kept(h, rows); size > HeadMaxBytes {
		t.Fatalf("60-byte cells: %d bytes kept", size)
	}

	// A short data row is padded to the header's width, no further.
	h, rows, cut, err = head([]byte("a,b,c\n1\n"))
	if err != nil || cut || len(h) != 3 || len(rows) != 1 || len(rows[0]) != 3 {
		t.Fatalf("%q %q %v %v", h, rows, cut, err)
	}
}

// TestJobKeepsLittle: a Runner's finished job, its rows all refused (so
// no gateway is called), keeps its file name cut to MaxFileName and is
// forgotten JobKeep after it ended when read, though no job started.
func TestJobKeepsLittle(t *testing.T) {
	var mu sync.Mutex
	now := time.Now()
	r := New(Config{Now: func() time.Time { mu.Lock(); defer mu.Unlock(); return now }})
	defer r.Close()
	slot, err := r.Reserve("E")
	if err != nil {
		t.Fatal(err)
	}
	rows, err := OpenRows(&closeCounter{Reader: strings.NewReader("13800138000,\n13800138001,\n")}, RowsOptions{Format: sheet.CSV})
	if err != nil {
		t.Fatal(err)
	}
	name := strings.Repeat("名", 1<<20/3) + ".csv" // 1 MiB
	j, err := slot.Start(JobSpec{Owner: "erin", Kind: KindBatch, File: name}, rows)
	if err != nil {
		t.Fatal(err)
	}
	<-j.Done()
	p := r.Get(j.ID()).Progress(true)
	if p.State != JobDone || p.Refused != 2 || len(p.File) > MaxFileName || !utf8.ValidString(p.File) ||
		!strings.HasPrefix(name, strings.TrimSuffix(p.File, "…")) {
		t.Fatalf("%s, %d refused, a %d-byte name", p.State, p.Refused, len(p.File))
	}
	mu.Lock()
	now = now.Add(JobKeep - time.Second)
	mu.Unlock()
	if r.Get(j.ID()) == nil || len(r.List()) != 1 {
		t.Fatal("forgotten before JobKeep")
	}
	mu.Lock()
	now = now.Add(time.Second)
	mu.Unlock()
	if r.Get(j.ID()) != nil || len(r.List()) != 0 {
		t.Fatal("kept past JobKeep")
	}
}
