package sheet_test

import (
	"bytes"
	"errors"
	"io"
	"runtime"
	"strings"
	"testing"

	"github.com/qxtd/qxtd/sheet"
	"github.com/qxtd/qxtd/sheet/sheettest"
)

// Archives of a few hundred KB that inflate to tens of MB in one cell, one
// shared string, one part: refused before excelize holds them, naming the
// row where one is known, with the heap growing by far less than the bomb.
func TestXLSXBombs(t *testing.T) {
	const big = 64 << 20
	many := strings.Repeat(sheettest.Inline("A1", "1"), 2000)
	for _, tc := range []struct {
		name string
		data []byte
		row  int
		msg  string
	}{
		{"cell", sheettest.HugeCell(big), 2, "a cell longer than"},
		{"shared string", sheettest.HugeSharedString(big), 0, "a shared string of the shared strings longer than"},
		{"shared strings", sheettest.ManySharedStrings(2_000_000), 0, "more than 1000000 shared strings"},
		{"picture", sheettest.HugePart(big), 0, "part image1.png unpacks to"},
		{"cells of a row", sheettest.Workbook(sheettest.Rows(many), nil), 1, "more than 1024 cells in a row"},
		{"comment", sheettest.Workbook(sheettest.Rows("<!--"+strings.Repeat("<>", 100_000)+"-->"), nil), 1, "a comment longer than"},
		{"tag", sheettest.Workbook(sheettest.Rows(`<c r="A1" x="`+strings.Repeat(">", 200_000)+`"/>`), nil), 1, "a tag longer than"},
		{"doctype", sheettest.Workbook(sheettest.Rows(`<!DOCTYPE x [<!ENTITY a "b">]>`), nil), 1, "directive"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var before, after runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&before)
			r, err := sheet.Open(bytes.NewReader(tc.data), sheet.Options{TempDir: t.TempDir()})
			if err == nil {
				for err == nil {
					_, err = r.Next()
				}
				_ = r.Close()
			}
			runtime.ReadMemStats(&after)
			var se *sheet.Error
			if !errors.As(err, &se) || se.Row != tc.row || !strings.Contains(err.Error(), tc.msg) || err == io.EOF {
				t.Fatalf("%d bytes: got %v, want row %d with %q", len(tc.data), err, tc.row, tc.msg)
			}
			// TotalAlloc: every byte allocated, freed or not.
			if grew := after.TotalAlloc - before.TotalAlloc; grew > 16<<20 {
				t.Errorf("%d bytes of archive: %d MiB allocated", len(tc.data), grew>>20)
			}
		})
	}
}

// XLSX cells are read as stored, not rounded through their format; text
// in scientific notation that lost digits stays refused, and so does a
// stored value in scientific notation with fewer digits than its size
// (Excel stores plain digits: such a value came through a lossy copy).
func TestXLSXStoredValues(t *testing.T) {
	data := sheettest.Workbook(sheettest.Rows(
		`<c r="A1"><v>8613912345678</v></c><c r="B1" t="inlineStr"><is><t>1.38001E+10</t></is></c>`,
		`<c r="A2" s="0"><v>1.3800138E10</v></c>`, `<c r="A3"><v>1.3800138000E10</v></c>`), nil)
	r, err := sheet.Open(bytes.NewReader(data), sheet.Options{Shown: true, TempDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	row, err := r.Next()
	if err != nil || row.Cell(0) != "8613912345678" || row.Cell(1) != "1.38001E+10" || row.ShownCell(1) != "1.38001E+10" {
		t.Fatalf("%+v %v", row, err)
	}
	if _, ok := sheet.NumericCell(row.Cell(1)); ok {
		t.Error("a text cell of truncated scientific notation is taken")
	}
	row, err = r.Next()
	if n, ok := sheet.NumericCell(row.Cell(0)); err != nil || ok || n != "1.3800138E10" {
		t.Errorf("%+v %v: %q %v", row, err, n, ok)
	}
	row, err = r.Next()
	if n, ok := sheet.NumericCell(row.Cell(0)); err != nil || !ok || n != "13800138000" {
		t.Errorf("%+v %v: %q %v", row, err, n, ok)
	}
}

// TestColumnLimit: at most sheet.MaxColumns cells a row in either format,
// as the XLSX guard counts cell elements: a CSV header of a million
// commas is refused, not a million columns that a caller pads each row
// to; an XLSX value past column AMJ likewise (excelize pads up to it).
func TestColumnLimit(t *testing.T) {
	wide := func(n int) string { return strings.Repeat("x,", n-1) + "x" }
	for _, tc := range []struct {
		name string
		data []byte
		row  int // 0: read whole
	}{
		{"csv 1,024", []byte("a,b\n" + wide(sheet.MaxColumns) + "\n"), 0},
		{"csv 1,025", []byte("a,b\n1,2\n" + wide(sheet.MaxColumns+1) + "\n"), 3},
		{"csv header of commas", []byte("号码,金额" + strings.Repeat(",", 1<<20-64) + "\n13800138000,1\n"), 1},
		{"csv blank row of commas", []byte("a,b\n" + strings.Repeat(",", 2000) + "\n1,2\n"), 2},
		{"tsv 1,025", []byte(strings.Repeat("x\t", sheet.MaxColumns) + "x\n"), 1},
		{"xlsx AMJ", sheettest.Workbook(sheettest.Rows(sheettest.Inline("A1", "a"), sheettest.Inline("AMJ2", "x")), nil), 0},
		{"xlsx AMK", sheettest.Workbook(sheettest.Rows(sheettest.Inline("A1", "a"), sheettest.Inline("AMK2", "x")), nil), 2},
		{"xlsx XFD", sheettest.Workbook(sheettest.Rows(sheettest.Inline("XFD1", "x")), nil), 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, err := sheet.Open(bytes.NewReader(tc.data), sheet.Options{Shown: true, TempDir: t.TempDir()})
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			widest := 0
			for {
				var row sheet.Row
				if row, err = r.Next(); err != nil {
					break
				}
				widest = max(widest, len(row.Cells), len(row.Shown))
			}
			var se *sheet.Error
			switch {
			case widest > sheet.MaxColumns:
				t.Fatalf("a row of %d cells", widest)
			case tc.row == 0 && err != io.EOF:
				t.Fatalf("refused: %v", err)
			case tc.row != 0 && (!errors.Is(err, sheet.ErrLimit) || !errors.As(err, &se) || se.Row != tc.row ||
				!strings.Contains(err.Error(), "1024")):
				t.Fatalf("got %v, want ErrLimit at row %d", err, tc.row)
			}
		})
	}
}
