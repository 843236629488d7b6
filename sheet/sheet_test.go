package sheet

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/xuri/excelize/v2"
)

// readAll reads every row as "N|cell|cell…".
func readAll(t testing.TB, data []byte, opts Options) ([]string, Format, error) {
	t.Helper()
	r, err := Open(bytes.NewReader(data), opts)
	if err != nil {
		return nil, 0, err
	}
	defer func() {
		if err := r.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	}()
	var out []string
	for {
		row, err := r.Next()
		if err == io.EOF {
			return out, r.Format(), nil
		}
		if err != nil {
			return out, r.Format(), err
		}
		out = append(out, fmt.Sprint(row.N)+"|"+strings.Join(row.Cells, "|"))
	}
}

// xlsxOf writes rows (from A1) to the first sheet of a new workbook.
func xlsxOf(t testing.TB, rows [][]any) []byte {
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

// The rows of every fixture in testdata: blank lines and a row of blank
// cells are skipped, a quoted cell keeps its quotes and line break, and
// rows are numbered by the line where they start.
var fixtureRows = []string{
	"1|号码|姓名|内容",
	"2|13800138000|张三|你好，\"朋友\"",
	"5|+86 138-0013-8001|李四|两行\n文字",
	"7|13800138002|王五|再见",
}

func TestReadFiles(t *testing.T) {
	for _, name := range []string{"utf8.csv", "utf8-bom.csv", "gbk.csv", "utf16le.txt", "utf16be.txt", "gbk-tab.txt"} {
		t.Run(name, func(t *testing.T) {
			data, err := os.ReadFile(filepath.Join("testdata", name))
			if err != nil {
				t.Fatal(err)
			}
			hint, _ := FormatOf(name)
			for _, f := range []Format{hint, Detect} {
				got, format, err := readAll(t, data, Options{Format: f})
				if err != nil || format != CSV || !reflect.DeepEqual(got, fixtureRows) {
					t.Errorf("format %v: %q, %v, %v", f, got, format, err)
				}
			}
			// Read one byte at a time: no reliance on how the source chunks.
			r, err := Open(iotest.OneByteReader(bytes.NewReader(data)), Options{})
			if err != nil {
				t.Fatal(err)
			}
			var n int
			for ; ; n++ {
				if _, err := r.Next(); err != nil {
					if err != io.EOF {
						t.Fatal(err)
					}
					break
				}
			}
			if n != len(fixtureRows) {
				t.Errorf("one byte at a time: %d rows", n)
			}
		})
	}
}

func TestReadXLSX(t *testing.T) {
	data := xlsxOf(t, [][]any{
		{"号码", "姓名", "金额"},
		{13712345678, "张三", 12.5}, // a number cell
		{nil, nil, nil},           // row 3: blank
		{"138-0013-8000", " ", 1.3916012345e10},
	})
	for _, tc := range []struct {
		name string
		opts Options
	}{
		{"by name", Options{Format: XLSX}},
		{"by content", Options{}},
		{"named CSV", Options{Format: CSV}}, // a zip archive is never CSV
		{"shown", Options{Shown: true, TempDir: t.TempDir()}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, format, err := readAll(t, data, tc.opts)
			if err != nil || format != XLSX {
				t.Fatalf("%q %v %v", got, format, err)
			}
			if len(got) != 3 || got[0] != "1|号码|姓名|金额" || got[1] != "2|13712345678|张三|12.5" || !strings.HasPrefix(got[2], "4|138-0013-8000| |") {
				t.Errorf("rows %q", got)
			}
			cells := strings.Split(got[2], "|")
			if n, ok := NumericCell(cells[3]); !ok || n != "13916012345" {
				t.Errorf("number cell %q", cells[3])
			}
		})
	}
}

func TestLimitsAndErrors(t *testing.T) {
	rows := func(n int) []byte {
		var b strings.Builder
		b.WriteString("号码,内容\n")
		for i := range n {
			fmt.Fprintf(&b, "138%08d,第%d条\n", i, i)
		}
		return []byte(b.String())
	}
	big := xlsxOf(t, [][]any{{"号码"}, {"13800138000"}, {"13800138001"}, {strings.Repeat("长", 100)}})
	for _, tc := range []struct {
		name string
		data []byte
		opts Options
		kind error
		row  int
		msg  string
	}{
		{"rows", rows(5), Options{Limits: Limits{MaxRows: 4}}, ErrLimit, 5, "more than 4 rows"},
		{"no byte bound", rows(3), Options{Limits: Limits{MaxBytes: math.MaxInt64}}, nil, 0, ""},
		{"rows exactly", rows(3), Options{Limits: Limits{MaxRows: 4}}, nil, 0, ""},
		{"rows xlsx", big, Options{Limits: Limits{MaxRows: 2}}, ErrLimit, 3, "more than 2 rows"},
		{"cell", []byte("a,b\n1," + strings.Repeat("x", 11) + "\n"), Options{Limits: Limits{MaxCell: 10}}, ErrLimit, 2, "cell B holds 11 bytes"},
		{"cell xlsx", big, Options{Limits: Limits{MaxCell: 200}}, ErrLimit, 4, "cell A holds 300 bytes"},
		{"row", []byte("a,b\n" + strings.Repeat("x,", 200_000) + "\n"), Options{Limits: Limits{MaxRow: 1000}}, ErrLimit, 2, "more than 1000 bytes"},
		{"row sum", []byte("a,b\n" + strings.Repeat("xx,", 600) + "\n"), Options{Limits: Limits{MaxRow: 1000}}, ErrLimit, 2, "the row holds"},
		{"bytes", rows(1000), Options{Limits: Limits{MaxBytes: 1000}}, ErrLimit, 0, "larger than 1000 bytes"},
		{"bytes before content", bytes.Repeat([]byte("1"), 2000), Options{Format: XLSX, Limits: Limits{MaxBytes: 1000}}, ErrLimit, 0, "larger than 1000 bytes"},
		{"bytes xlsx", big, Options{Limits: Limits{MaxBytes: 1000}}, ErrLimit, 0, "larger than 1000 bytes"},
		{"xls", []byte("\xD0\xCF\x11\xE0\xA1\xB1\x1A\xE1rest"), Options{}, ErrUnsupported, 0, "XLS (Excel 97–2003)"},
		{"not a zip", []byte("PK not a zip"), Options{Format: XLSX}, ErrMalformed, 0, "no zip archive"},
		{"broken zip", []byte("PK\x03\x04 not really"), Options{}, ErrMalformed, 0, "XLSX"},
		{"quote", []byte("a,b\n1,\"x\"y\"\n"), Options{}, nil, 0, ""}, // lenient quotes
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := readAll(t, tc.data, tc.opts)
			if tc.kind == nil {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			var se *Error
			if !errors.Is(err, tc.kind) || !errors.As(err, &se) || se.Row != tc.row || !strings.Contains(err.Error(), tc.msg) {
				t.Fatalf("got %v (row %v), want %v at row %d with %q", err, se, tc.kind, tc.row, tc.msg)
			}
		})
	}
}

// A read error of the source stays reachable, and is not taken for a
// malformed file.
func TestReadError(t *testing.T) {
	boom := errors.New("boom")
	for _, data := range [][]byte{[]byte("a,b\n1,2\n"), xlsxOf(t, [][]any{{"a"}})} {
		src := io.MultiReader(bytes.NewReader(data[:len(data)-3]), iotest.ErrReader(boom))
		r, err := Open(src, Options{})
		if err == nil {
			for err == nil {
				_, err = r.Next()
			}
		}
		if !errors.Is(err, boom) || errors.Is(err, ErrMalformed) {
			t.Errorf("%v", err)
		}
	}
}

// After an error, Next keeps returning it.
func TestStickyError(t *testing.T) {
	r, err := Open(strings.NewReader("1\n2\n3\n"), Options{Limits: Limits{MaxRows: 1}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.Next(); err != nil {
		t.Fatal(err)
	}
	_, e1 := r.Next()
	_, e2 := r.Next()
	if !errors.Is(e1, ErrLimit) || e1 != e2 {
		t.Errorf("%v then %v", e1, e2)
	}
}

func TestFormatOfAndSniff(t *testing.T) {
	for name, want := range map[string]Format{"名单.XLSX": XLSX, "a.csv": CSV, "a.TXT": CSV, "old.xls": XLS} {
		if f, ok := FormatOf(name); !ok || f != want {
			t.Errorf("%s: %v %v", name, f, ok)
		}
	}
	if f, ok := FormatOf("a.pdf"); ok || f != Detect {
		t.Errorf("pdf: %v", f)
	}
	for head, want := range map[string]Format{"PK\x03\x04": XLSX, "\xD0\xCF\x11\xE0\xA1\xB1\x1A\xE1": XLS, "\xD0\xCF\x11\xE0": XLS, "号码": Detect, "": Detect} {
		if got := Sniff([]byte(head)); got != want {
			t.Errorf("Sniff(%q) = %v", head, got)
		}
	}
}

func TestNumericCell(t *testing.T) {
	for in, want := range map[string]string{
		"1.3800138000E+10": "13800138000", "13800138000.0": "13800138000", "12.5": "12.5",
		"13800138000": "13800138000", "-1E+3": "-1E+3", "1e20": "1e20", "abc.": "abc.",
		"8.613800138000E+12": "8613800138000", " 1.3800138001e10 ": "13800138001",
		"1.38001380001E+10": "1.38001380001E+10", // not a whole number: left for the caller to refuse
		"1E-3":              "1E-3", "138E": "138E",
	} {
		if got, ok := NumericCell(in); got != want || !ok {
			t.Errorf("NumericCell(%q) = %q, %v; want %q", in, got, ok, want)
		}
	}
	// Excel's scientific notation with fewer digits than the number had:
	// somebody else's number.
	for _, in := range []string{"1.38001E+10", "8.6138E+12", "1.39E+13", "1.38001380E+10", "1E+10", "+1.38E+10", "1.38e10"} {
		if got, ok := NumericCell(in); ok || got != in {
			t.Errorf("NumericCell(%q) = %q, %v; want it refused", in, got, ok)
		}
	}
}

func TestColumnName(t *testing.T) {
	for i, want := range map[int]string{0: "A", 25: "Z", 26: "AA", 701: "ZZ", 702: "AAA"} {
		if got := columnName(i); got != want {
			t.Errorf("columnName(%d) = %s", i, got)
		}
	}
}

// FuzzRead: whatever the bytes, Open and Next end in rows, io.EOF or an
// *Error — never a panic, never a row past the limits.
func FuzzRead(f *testing.F) {
	for _, name := range []string{"utf8.csv", "gbk.csv", "utf16le.txt", "utf16be.txt"} {
		data, err := os.ReadFile(filepath.Join("testdata", name))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Add(xlsxOf(f, [][]any{{"号码", "内容"}, {13800138000, "你好"}}))
	f.Add([]byte("PK\x03\x04"))
	f.Add([]byte("\"a\nb"))
	lim := Limits{MaxBytes: 1 << 20, MaxRows: 50, MaxCell: 64, MaxRow: 256, MaxUnpacked: 4 << 20}
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := Open(bytes.NewReader(data), Options{Limits: lim, TempDir: t.TempDir(), Shown: len(data)%2 == 0})
		if err != nil {
			var se *Error
			if !errors.As(err, &se) {
				t.Fatalf("Open: %T %v", err, err)
			}
			return
		}
		defer r.Close()
		for n := 0; ; n++ {
			row, err := r.Next()
			if err == io.EOF {
				return
			}
			if err != nil {
				var se *Error
				if !errors.As(err, &se) {
					t.Fatalf("Next: %T %v", err, err)
				}
				return
			}
			if n >= lim.MaxRows || row.N < 1 || blank(row.Cells) {
				t.Fatalf("row %d: %+v", n, row)
			}
			for _, c := range append(row.Cells, row.Shown...) {
				if len(c) > lim.MaxCell {
					t.Fatalf("cell of %d bytes", len(c))
				}
				if n, ok := NumericCell(c); !ok && n != c {
					t.Fatalf("NumericCell(%q) refused as %q", c, n)
				}
			}
		}
	})
}

func TestFormatOfType(t *testing.T) {
	for ct, want := range map[string]Format{
		"text/csv; charset=gbk":       CSV,
		"text/comma-separated-values": CSV,
		"text/plain":                  CSV,
		XLSXContentType:               XLSX,
		"application/octet-stream":    Detect,
		"":                            Detect,
	} {
		got, ok := FormatOfType(ct)
		if got != want || ok != (want != Detect) {
			t.Errorf("FormatOfType(%q) = %v, %v; want %v", ct, got, ok, want)
		}
	}
}
