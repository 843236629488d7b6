package batch

import (
	"bytes"
	"reflect"
	"testing"

	"github.com/xuri/excelize/v2"
)

// Numbers Excel cut short (scientific notation with digits missing) are
// refused per row as number_truncated, never sent to the number they
// round to; a number cell is read as stored, whatever its format, and a
// template field as shown.
func TestTruncatedNumbers(t *testing.T) {
	f := excelize.NewFile()
	sci, _ := f.NewStyle(&excelize.Style{NumFmt: 11})  // 0.00E+00
	money, _ := f.NewStyle(&excelize.Style{NumFmt: 2}) // 0.00
	for i, row := range [][]any{{"手机号", "金额"}, {13800138012, 12.5}, {"1.38001E+10", 3}} {
		cell, _ := excelize.CoordinatesToCellName(1, i+1)
		if err := f.SetSheetRow("Sheet1", cell, &row); err != nil {
			t.Fatal(err)
		}
	}
	_ = f.SetCellStyle("Sheet1", "A2", "A2", sci)
	_ = f.SetCellStyle("Sheet1", "B2", "B3", money)
	var buf bytes.Buffer
	if err := f.Write(&buf); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		file []byte
		o    RowsOptions
		want []string
	}{
		{"batch csv", []byte("号码,内容\n1.38001E+10,a\n8.6138E+12,b\n1.3800138001E+10,c\n13800138002.0,d\n"), RowsOptions{},
			[]string{"02|1.38001E+10|!number_truncated", "03|8.6138E+12|!number_truncated", "04|13800138001|c", "05|13800138002|d"}},
		{"template xlsx", buf.Bytes(), RowsOptions{Template: "应付 {金额} 元"},
			[]string{"02|13800138012|应付 12.50 元", "03|1.38001E+10|!number_truncated"}},
		{"batch xlsx", buf.Bytes(), RowsOptions{}, []string{"02|13800138012|12.5", "03|1.38001E+10|!number_truncated"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rs, err := OpenRows(&closeCounter{Reader: bytes.NewReader(tc.file)}, tc.o)
			if err != nil {
				t.Fatal(err)
			}
			defer rs.Close()
			if got := drain(t, rs); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("rows %q, want %q", got, tc.want)
			}
		})
	}
}
