package api

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/xuri/excelize/v2"

	"github.com/qxtd/qxtd/policy"
	"github.com/qxtd/qxtd/sheet"
)

// adminCSV is a whitelist upload with a header, good rows and planted bad ones.
const adminCSV = "\ufeffnumber,name\n" + // row 1: header (no digit in column A)
	"13800138000,a\n" + // row 2: ok
	",missing number\n" + // row 3: empty column A
	"abc,bad\n" + // row 4: not a number
	"13800138001,b\n" + // row 5: ok
	"\n" + // row 6: blank, not a row
	"13800138000,repeated\n" // row 7: duplicate of row 2

func adminXLSX(t *testing.T) []byte {
	t.Helper()
	f := excelize.NewFile()
	defer f.Close()
	sh := f.GetSheetName(0)
	for _, c := range []struct {
		cell string
		v    any
	}{
		{"A1", "手机号"},         // header
		{"A2", 13900139000},   // numeric cell
		{"A3", "1390013900x"}, // bad
		{"A4", "+8613900139001"},
		{"B5", "no number"},    // row with content but empty column A
		{"A6", "020-12345678"}, // landline
		{"A7", 13900139000},    // duplicate
	} {
		if err := f.SetCellValue(sh, c.cell, c.v); err != nil {
			t.Fatal(err)
		}
	}
	var b bytes.Buffer
	if err := f.Write(&b); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func errorRows(errs []policy.RowError) []int {
	var rows []int
	for _, e := range errs {
		if e.Reason != policy.ReasonInvalidNumber.String() {
			panic("reason " + e.Reason)
		}
		rows = append(rows, e.Row)
	}
	return rows
}

func pageNumbers(p *WhitelistPage) []string {
	var out []string
	for _, e := range p.Entries {
		out = append(out, e.Number)
	}
	return out
}

func TestImportTooLarge(t *testing.T) {
	t.Parallel()
	e := newAdminEnv(t, func(s *Server) { s.admin.maxImport, s.admin.maxJSON = 64<<10, 16<<10 })
	adminMust(e.c.CreateEnterprise(NewEnterprise{Code: "ACME", Name: "Acme", Package: 1})).get(t)
	for _, f := range []sheet.Format{sheet.CSV, sheet.XLSX} {
		// CSV: one endless field, so that the size, not the row count, stops it.
		_, err := e.c.ImportWhitelist(context.Background(), "ACME", f, io.LimitReader(repeatByte('1'), 64<<10+1))
		wantAPIError(t, err, http.StatusRequestEntityTooLarge, "too_large")
	}
	err := e.c.Upload(context.Background(), "POST", "/admin/v1/enterprises/ACME/whitelist", "application/json",
		io.MultiReader(strings.NewReader(`{"numbers":["`), io.LimitReader(repeatByte('1'), 16<<10)), nil)
	wantAPIError(t, err, http.StatusRequestEntityTooLarge, "too_large")
	// Just under the limits is fine (and still refused per row).
	res := adminMust(e.c.ImportWhitelist(context.Background(), "ACME", sheet.CSV,
		strings.NewReader(strings.Repeat("13800138000\n", (64<<10)/12)))).get(t)
	if res.Added != 1 || res.Duplicates != (64<<10)/12-1 {
		t.Fatalf("under the limit: %+v", res.Rows)
	}
}

func TestListLimit(t *testing.T) {
	t.Parallel()
	e := newAdminEnv(t)
	adminMust(e.c.CreateEnterprise(NewEnterprise{Code: "ACME", Name: "Acme", Package: 1})).get(t)
	many := make([]string, maxListItems+1)
	for i := range many {
		many[i] = "1"
	}
	for _, p := range []string{"", "/approve"} { // readNumbers, and the decision path
		err := e.c.Do("POST", "/admin/v1/enterprises/ACME/whitelist"+p, Numbers{Numbers: many}, nil)
		wantAPIError(t, err, http.StatusBadRequest, "invalid")
		if !strings.Contains(err.Error(), "at most 100000") {
			t.Fatal(err)
		}
	}
}

// repeatByte reads as an endless run of one byte.
type repeatByte byte

func (r repeatByte) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = byte(r)
	}
	return len(p), nil
}
