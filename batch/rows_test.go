package batch

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"reflect"
	"strings"
	"testing"

	"github.com/xuri/excelize/v2"

	"github.com/qxtd/qxtd/sheet"
)

// xlsxFile writes rows (from A1) to a workbook in memory.
func xlsxFile(t testing.TB, rows ...[]any) []byte {
	t.Helper()
	f := excelize.NewFile()
	defer f.Close()
	for i, row := range rows {
		cell, _ := excelize.CoordinatesToCellName(1, i+1)
		if err := f.SetSheetRow("Sheet1", cell, &row); err != nil {
			t.Fatal(err)
		}
	}
	var buf bytes.Buffer
	if err := f.Write(&buf); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// closeCounter is a file whose Close is counted.
type closeCounter struct {
	io.Reader
	closed int
}

func (c *closeCounter) Close() error { c.closed++; return nil }

// drain reads every row of rs as "row|number|text" or "row|number|!reason".
func drain(t *testing.T, rs *Rows) []string {
	t.Helper()
	var out []string
	for {
		row, err := rs.next()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		number, text, reason, _ := rs.spec(row)
		if reason != "" {
			text = "!" + reason
		}
		out = append(out, fmt.Sprintf("%02d|%s|%s", row.N, number, text))
	}
}

func TestOpenRows(t *testing.T) {
	sheetT := xlsxFile(t,
		[]any{"姓名", "手机号", "金额"},
		[]any{"张三", 13712345678, 12.5},
		[]any{"李四", "13800138001", ""},
		[]any{"赵六", "", 1},
	)
	for _, tc := range []struct {
		name string
		file []byte
		o    RowsOptions
		want []string
	}{
		{"batch with header", []byte("号码,内容\n13800138000,你好\n,没有号码\n13800138001,\n"), RowsOptions{},
			[]string{"02|13800138000|你好", "03||!invalid_number", "04|13800138001|!empty_text"}},
		{"batch without header", []byte("13800138000,你好\n"), RowsOptions{}, []string{"01|13800138000|你好"}},
		{"batch xlsx named csv", xlsxFile(t, []any{1.3800138e10, "你好"}), RowsOptions{Format: sheet.CSV}, []string{"01|13800138000|你好"}},
		{"template", sheetT, RowsOptions{Template: "{姓名}您好，{金额} 元{{整}}", NumberColumn: "手机号"},
			[]string{"02|13712345678|张三您好，12.5 元{整}", "03|13800138001|!empty_field", "04||!invalid_number"}},
		{"template default number column", []byte("手机号码,姓名\n13800138000,李四\n"), RowsOptions{Template: "{姓名}，明天开会"},
			[]string{"02|13800138000|李四，明天开会"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := &closeCounter{Reader: bytes.NewReader(tc.file)}
			rs, err := OpenRows(f, tc.o)
			if err != nil {
				t.Fatal(err)
			}
			if got := drain(t, rs); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("rows %q, want %q", got, tc.want)
			}
			rs.Close()
			if f.closed != 1 {
				t.Errorf("file closed %d times", f.closed)
			}
		})
	}
}

// TestOpenRowsRefused: what is refused before any row is sent, with the
// reason the API answers.
func TestOpenRowsRefused(t *testing.T) {
	sheetT := xlsxFile(t, []any{"姓名", "手机号"}, []any{"张三", 13712345678})
	for _, tc := range []struct {
		name   string
		file   []byte
		o      RowsOptions
		reason string // "": not a *FieldError
		msg    string
	}{
		{"unknown field", sheetT, RowsOptions{Template: "{姓名}{余额}", NumberColumn: "手机号"}, "unknown_field", "{余额}"},
		{"unknown number column", sheetT, RowsOptions{Template: "{姓名}", NumberColumn: "手机"}, "unknown_field", "number_column"},
		{"no number column", xlsxFile(t, []any{"名字", "电话号"}, []any{"张三", 13712345678}), RowsOptions{Template: "{名字}"}, "invalid", "number_column is required"},
		{"two columns one name", []byte("手机号,姓名,姓名\n13800138000,a,b\n"), RowsOptions{Template: "{姓名}"}, "invalid", "two columns"},
		{"unclosed", sheetT, RowsOptions{Template: "{姓名"}, "invalid", "not closed"},
		{"no field", sheetT, RowsOptions{Template: "没有字段"}, "invalid", "no {column}"},
		{"header only", xlsxFile(t, []any{"姓名", "手机号"}), RowsOptions{Template: "x{姓名}"}, "", "no data row"},
		{"empty", nil, RowsOptions{}, "", "no rows"},
		{"blank", []byte("\n,\n"), RowsOptions{}, "", "no rows"},
		{"batch header only", []byte("号码,内容\n"), RowsOptions{}, "", "no data row"},
		{"broken xlsx", []byte("PK\x03\x04 not really"), RowsOptions{}, "", "cannot be read"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := &closeCounter{Reader: bytes.NewReader(tc.file)}
			_, err := OpenRows(f, tc.o)
			var fe *FieldError
			isField := errors.As(err, &fe)
			if err == nil || isField != (tc.reason != "") || isField && fe.Reason != tc.reason || !strings.Contains(err.Error(), tc.msg) {
				t.Fatalf("got %v, want reason %q with %q", err, tc.reason, tc.msg)
			}
			if f.closed != 1 {
				t.Errorf("file closed %d times", f.closed)
			}
		})
	}
}

func TestCompileTemplate(t *testing.T) {
	parts, err := compileTemplate("{{a}} {x}-{ y }}}")
	if err != nil {
		t.Fatal(err)
	}
	want := []tmplPart{{text: "{a} "}, {field: true, text: "x"}, {text: "-"}, {field: true, text: "y"}, {text: "}"}}
	if !reflect.DeepEqual(parts, want) {
		t.Errorf("%+v", parts)
	}
	for _, bad := range []string{"{", "}", "{}", "{ }", "{a{b}", "text", "\xff{a}", "{\xff}"} {
		var fe *FieldError
		if _, err := compileTemplate(bad); !errors.As(err, &fe) || fe.Reason != "invalid" {
			t.Errorf("%q: %v", bad, err)
		}
	}
}
