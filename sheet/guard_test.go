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
