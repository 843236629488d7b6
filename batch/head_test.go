package batch

import (
	"bytes"
	"io"
	"reflect"
	"testing"

	"github.com/qxtd/qxtd/sheet"
)

// TestHead: the header and the first rows as a templated send reads them,
// and Next fills the template exactly as a job does.
func TestHead(t *testing.T) {
	file := xlsxFile(t,
		[]any{" 姓名 ", "手机号码", "金额"},
		[]any{"张三", "13712345678", 100},
		[]any{"李四", "13712345679"},
		[]any{"王五", "13712345670", 3.5, "extra"},
	)
	open := func() io.ReadCloser { return &closeCounter{Reader: bytes.NewReader(file)} }
	h, rows, cut, err := Head(open(), RowsOptions{Format: sheet.XLSX}, 2)
	if err != nil || cut {
		t.Fatal(cut, err)
	}
	if want := []string{"姓名", "手机号码", "金额"}; !reflect.DeepEqual(h, want) {
		t.Fatalf("header %q", h)
	}
	if want := [][]string{{"张三", "13712345678", "100"}, {"李四", "13712345679", ""}}; !reflect.DeepEqual(rows, want) {
		t.Fatalf("rows %q", rows)
	}
	if _, _, _, err := Head(&closeCounter{Reader: bytes.NewReader(nil)}, RowsOptions{Format: sheet.CSV}, 5); err == nil {
		t.Fatal("an empty file has a header")
	}

	rs, err := OpenRows(open(), RowsOptions{Format: sheet.XLSX, Template: "{姓名}：{金额}元", NumberColumn: "手机号码"})
	if err != nil {
		t.Fatal(err)
	}
	defer rs.Close()
	var got []Row
	for {
		r, err := rs.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, r)
	}
	if len(got) != 3 || got[0] != (Row{N: 2, Number: "13712345678", Text: "张三：100元"}) ||
		got[1].Reason != "empty_field" || got[2].Text != "王五：3.5元" {
		t.Fatalf("rows %+v", got)
	}
}
