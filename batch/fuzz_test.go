package batch

import (
	"bytes"
	"errors"
	"io"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/qxtd/qxtd/policy"
	"github.com/qxtd/qxtd/sheet"
)

// FuzzTemplate: any template, number column and file (a CSV file, or a
// workbook should the fuzzer make one) through Head, OpenRows and Next as a
// templated send's preview and job read them (an empty template: a batch
// file). Each returns rows or an error (a *FieldError with its reason
// when the request does not fit the header), never a panic, and closes
// the file. A row is sent with the number of its number column (the
// first headed number_column, or else the first headed 号码, 手机号, …;
// a batch file's column A), or refused with a row reason; a filled text
// is UTF-8 when the row's cells are, and Head shows the rows Next reads.
func FuzzTemplate(f *testing.F) {
	csvs := [][]byte{
		[]byte("号码,内容\n13800138000,你好\n,没有号码\n13800138001,\n"),
		[]byte("13800138000,你好\n"),
		[]byte("手机号码,姓名\n13800138000,李四\n"),
		[]byte("姓名,手机号,金额\n张三,13712345678,12.5\n李四,13800138001,\n赵六,,1\n"),
		[]byte("手机号,姓名,姓名\n13800138000,a,b\n"),
		[]byte(" 姓名 ,手机号码,金额\n张三,1.3712345678E+10,100\n李四,1.37E+10\n王五,13712345670,3.5,extra\n"),
		[]byte("number\tname\n13800138000\t{x}\n"),
		[]byte("\"手机号\",\"a,b\"\n\"13800138000\",\"多\n行\"\n"),
		[]byte("\xef\xbb\xbf手机号,姓名\r\n13800138000,张三\r\n"),
		[]byte("\xff\xfe\x4b\x62\x3a\x67\xf7\x53\x2c\x00\x61\x00\x0a\x00\x31\x00\x2c\x00\x62\x00\x0a\x00"), // UTF-16 LE: 手机号,a / 1,b
		[]byte("\xca\xd6\xbb\xfa\xba\xc5,\xd0\xd5\xc3\xfb\n13800138000,\xd5\xc5\xc8\xfd\n"),                // GBK: 手机号,姓名 / …,张三
		[]byte("号码,内容\n"),
		[]byte("\n,\n"),
		[]byte("PK\x03\x04 not really"),
		nil,
		// No workbook: FuzzRead of package sheet fuzzes those, and the
		// fuzzer's minimizer spent its whole minute on every mutation of
		// one (6 KiB, a millisecond each).
	}
	templates := []struct{ tmpl, numberColumn string }{
		{"", ""},
		{"{姓名}您好，{金额} 元{{整}}", "手机号"},
		{"{姓名}，明天开会", ""},
		{"{姓名}：{金额}元", "手机号码"},
		{"{{a}} {x}-{ y }}}", ""},
		{"{姓名}{余额}", "手机号"},
		{"{姓名}", "手机"},
		{"{ 姓名 }", " 手机号 "},
		{"{", ""}, {"}", ""}, {"{}", ""}, {"{ }", ""}, {"{a{b}", ""}, {"没有字段", ""},
		{"\xff{姓名}", ""},
		{"{\xff}", ""},
	}
	// Every file with one template and every template with the file its
	// fields name: the whole cross product only slows the seeds down.
	for i, c := range csvs {
		t := templates[i%len(templates)]
		f.Add(t.tmpl, t.numberColumn, c)
		f.Add("", "", c)
	}
	for _, t := range templates {
		f.Add(t.tmpl, t.numberColumn, csvs[3])
		f.Add(t.tmpl, t.numberColumn, csvs[5])
	}
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, tmpl, numberColumn string, file []byte) {
		o := RowsOptions{Format: sheet.CSV, Template: tmpl, NumberColumn: numberColumn, MaxBytes: 1 << 20, TempDir: dir}
		ref := refRows(file, o)

		hf := &closeCounter{Reader: bytes.NewReader(file)}
		header, head, cut, headErr := Head(hf, o, 5)
		if hf.closed != 1 {
			t.Fatalf("Head closed the file %d times", hf.closed)
		}
		if headErr == nil && ref.err == nil && ref.header != nil {
			for i, h := range header {
				if want := Clip(strings.TrimSpace(ref.header.Cell(i)), HeadCellBytes); h != want {
					t.Fatalf("Head header[%d] %q, want %q", i, h, want)
				}
			}
		}

		rf := &closeCounter{Reader: bytes.NewReader(file)}
		rs, err := OpenRows(rf, o)
		if err != nil {
			if rf.closed != 1 {
				t.Fatalf("OpenRows failed (%v) and closed the file %d times", err, rf.closed)
			}
			var fe *FieldError
			if errors.As(err, &fe) && (fe.Reason != "unknown_field" && fe.Reason != "invalid" || fe.Msg == "") {
				t.Fatalf("*FieldError %q: %q", fe.Reason, fe.Msg)
			}
			if err.Error() == "" {
				t.Fatal("an error that says nothing")
			}
			return
		}
		if tmpl != "" && !utf8.ValidString(tmpl) {
			t.Fatalf("template %q is not UTF-8, yet opened", tmpl)
		}
		numCol := ref.numberColumn(o)
		if numCol < 0 {
			t.Fatalf("opened with no number column in header %q", ref.header.Cells)
		}
		var read []Row
		for {
			row, err := rs.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				if err.Error() == "" {
					t.Fatal("an error that says nothing")
				}
				break // a malformed or too large file past its first rows
			}
			read = append(read, row)
			i := len(read) - 1
			if i >= len(ref.rows) || ref.rows[i].N != row.N {
				t.Fatalf("row %d is N %d; the sheet reads %d rows", i, row.N, len(ref.rows))
			}
			checkRow(t, row, ref.rows[i], numCol, o.Template != "")
		}
		rs.Close()
		if rf.closed != 1 {
			t.Fatalf("Close closed the file %d times", rf.closed)
		}
		if len(read) == 0 {
			t.Fatal("opened, yet no data row")
		}
		if o.Template != "" && headErr == nil && !cut && len(head) != min(5, len(read)) && len(read) == len(ref.rows) {
			t.Fatalf("Head shows %d rows, Next read %d", len(head), len(read))
		}
	})
}

// checkRow holds a row as Next returned it to the sheet's row it came
// from.
func checkRow(t *testing.T, row Row, src sheet.Row, numCol int, templated bool) {
	t.Helper()
	number, ok := sheet.NumericCell(strings.TrimSpace(src.Cell(numCol)))
	switch {
	case number == "":
		if row.Reason != policy.ReasonInvalidNumber.String() {
			t.Fatalf("row %d: empty number, reason %q", row.N, row.Reason)
		}
		return
	case row.Number != number:
		t.Fatalf("row %d: number %q, column %d holds %q", row.N, row.Number, numCol, number)
	case !ok:
		if row.Reason != policy.RowNumberTruncated {
			t.Fatalf("row %d: truncated number %q, reason %q", row.N, number, row.Reason)
		}
		return
	}
	switch row.Reason {
	case "":
		if row.Text == "" {
			t.Fatalf("row %d: sent with no text", row.N)
		}
		cells := src.Cells
		if templated && src.Shown != nil {
			cells = src.Shown
		}
		if !utf8.ValidString(row.Text) && !slices.ContainsFunc(cells, func(c string) bool { return !utf8.ValidString(c) }) {
			t.Fatalf("row %d: text %q is not UTF-8, its cells are", row.N, row.Text)
		}
	case policy.RowEmptyField, policy.RowEmptyText:
		if row.Text != "" || row.Message == "" {
			t.Fatalf("row %d: refused %s with text %q, message %q", row.N, row.Reason, row.Text, row.Message)
		}
	default:
		t.Fatalf("row %d: reason %q", row.N, row.Reason)
	}
}

// sheetRows is a file as package sheet reads it, for FuzzTemplate to
// compare with.
type sheetRows struct {
	header *sheet.Row // the first row; nil if none
	rows   []sheet.Row
	err    error
}

func refRows(file []byte, o RowsOptions) sheetRows {
	var s sheetRows
	sr, err := sheet.Open(bytes.NewReader(file), sheet.Options{Format: o.Format, Limits: sheet.Limits{MaxBytes: o.MaxBytes},
		TempDir: o.TempDir, Shown: o.Template != ""})
	if err != nil {
		s.err = err
		return s
	}
	defer sr.Close()
	for {
		row, err := sr.Next()
		if err != nil {
			if err != io.EOF {
				s.err = err
			}
			break
		}
		row = sheet.Row{N: row.N, Cells: slices.Clone(row.Cells), Shown: slices.Clone(row.Shown)}
		if s.header == nil {
			s.header = &row
			continue
		}
		s.rows = append(s.rows, row)
	}
	// A batch file's first row is data unless column A has no digit.
	if o.Template == "" && s.header != nil {
		if a := strings.TrimSpace(s.header.Cell(0)); a == "" || strings.ContainsAny(a, "0123456789") {
			s.rows = append([]sheet.Row{*s.header}, s.rows...)
		}
	}
	return s
}

// numberColumn is the number column as doc.go says: column A of a batch
// file; the first column headed number_column; or else the first headed
// one of numberHeaders. -1: none.
func (s sheetRows) numberColumn(o RowsOptions) int {
	if o.Template == "" {
		return 0
	}
	if s.header == nil {
		return -1
	}
	for i, h := range s.header.Cells {
		h = strings.TrimSpace(h)
		switch {
		case h == "":
		case o.NumberColumn != "":
			if h == strings.TrimSpace(o.NumberColumn) {
				return i
			}
		case slices.ContainsFunc(numberHeaders, func(n string) bool { return strings.EqualFold(n, h) }):
			return i
		}
	}
	return -1
}
