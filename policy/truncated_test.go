package policy

import (
	"bytes"
	"os"
	"strings"
	"testing"

	"github.com/xuri/excelize/v2"

	"github.com/qxtd/qxtd/sheet"
)

// An XLSX number cell formatted 0.00E+00 is read as its stored digits,
// and text in scientific notation that lost digits is refused per row as
// number_truncated, in both importers of this package.
func TestImportTruncatedNumbers(t *testing.T) {
	f := newFixture(t)
	x := excelize.NewFile()
	sci, _ := x.NewStyle(&excelize.Style{NumFmt: 11}) // shown as 1.39E+10
	for i, row := range [][]any{{"姓名", "号码"}, {"张三", 13912345678}, {"李四", "1.38001E+10"}} {
		cell, _ := excelize.CoordinatesToCellName(1, i+1)
		if err := x.SetSheetRow("Sheet1", cell, &row); err != nil {
			t.Fatal(err)
		}
	}
	_ = x.SetCellStyle("Sheet1", "B2", "B2", sci)
	var buf bytes.Buffer
	if err := x.Write(&buf); err != nil {
		t.Fatal(err)
	}
	book := EnterpriseBook(entA)
	res, err := f.p.ImportContacts(f.aAdmin, book, bytes.NewReader(buf.Bytes()), sheet.XLSX)
	if err != nil {
		t.Fatal(err)
	}
	if res.Added != 1 || len(res.Errors) != 1 || res.Errors[0].Row != 3 || res.Errors[0].Reason != RowNumberTruncated {
		t.Fatalf("%+v", res)
	}
	list, err := f.p.Contacts(f.aAdmin, book, "")
	if err != nil || len(list) != 1 || list[0].Number != "+8613912345678" {
		t.Fatalf("%+v %v", list, err)
	}

	wl, err := f.p.ImportWhitelist(f.aAdmin, entA, strings.NewReader("号码\n8.6138E+12\n13712345678\n"), sheet.CSV)
	if err != nil {
		t.Fatal(err)
	}
	if wl.Added != 1 || len(wl.Errors) != 1 || wl.Errors[0].Row != 2 || wl.Errors[0].Reason != RowNumberTruncated ||
		!strings.Contains(wl.Errors[0].Detail, "8.6138E+12") {
		t.Fatalf("%+v", wl)
	}
}

// The README's error section lists every row reason.
func TestRowReasonsInREADME(t *testing.T) {
	b, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range RowReasons() {
		if !strings.Contains(string(b), "`"+r[0]+"`") || r[1] == "" {
			t.Errorf("row reason %s: not in README.md, or no meaning", r[0])
		}
	}
}

// Every row reason has a Chinese explanation for the console.
func TestRowReasonZH(t *testing.T) {
	for _, r := range RowReasons() {
		if zh := RowReasonZH(r[0]); zh == "" || zh == "未知原因" {
			t.Errorf("row reason %s: no Chinese explanation", r[0])
		}
	}
	if RowReasonZH("nonsense") != "未知原因" {
		t.Error("an unknown row reason has an explanation")
	}
}
