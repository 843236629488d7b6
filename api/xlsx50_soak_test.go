//go:build soak

package api

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/qxtd/qxtd/sheet/sheettest"
)

// randomText writes n characters drawn from the CJK unified ideographs:
// about 14 bits each, so that deflate gains little on them.
func randomText(w *bufio.Writer, rng *rand.Rand, n int) {
	for range n {
		_, _ = w.WriteRune(rune(0x4E00 + rng.IntN(0x9FA5-0x4E00+1)))
	}
}

// randomNumber is a mobile number of mainland China.
func randomNumber(rng *rand.Rand) string {
	return fmt.Sprintf("1%d%09d", 3+rng.IntN(7), rng.IntN(1_000_000_000))
}

// validBatch is a batch file as Excel writes it: a header, then rows
// numbers in column A and texts of textLen random characters in column B,
// the texts in the shared strings table (inline strings, as other writers
// write them, when inline).
func validBatch(rows, textLen int, inline bool) []byte {
	// Both parts draw from the same sequence: the sheet's texts (inline)
	// or the table's strings are the same.
	text := func(w *bufio.Writer, rng *rand.Rand) { randomText(w, rng, textLen) }
	sheet := func(out io.Writer) error {
		w := bufio.NewWriterSize(out, 64<<10)
		nums := rand.New(rand.NewPCG(1, 1))
		texts := rand.New(rand.NewPCG(2, 2))
		_, _ = w.WriteString(`<?xml version="1.0" encoding="UTF-8"?><worksheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"><sheetData>`)
		_, _ = w.WriteString(`<row r="1">` + sheettest.Inline("A1", "号码") + sheettest.Inline("B1", "内容") + `</row>`)
		for i := range rows {
			n := i + 2
			fmt.Fprintf(w, `<row r="%d"><c r="A%d"><v>%s</v></c>`, n, n, randomNumber(nums))
			if inline {
				fmt.Fprintf(w, `<c r="B%d" t="inlineStr"><is><t>`, n)
				text(w, texts)
				_, _ = w.WriteString(`</t></is></c></row>`)
			} else {
				fmt.Fprintf(w, `<c r="B%d" t="s"><v>%d</v></c></row>`, n, i)
			}
		}
		_, _ = w.WriteString(`</sheetData></worksheet>`)
		return w.Flush()
	}
	var sst func(io.Writer) error
	if !inline {
		sst = func(out io.Writer) error {
			w := bufio.NewWriterSize(out, 64<<10)
			texts := rand.New(rand.NewPCG(2, 2))
			fmt.Fprintf(w, `<?xml version="1.0" encoding="UTF-8"?><sst xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main" count="%d" uniqueCount="%d">`, rows, rows)
			for range rows {
				_, _ = w.WriteString(`<si><t>`)
				text(w, texts)
				_, _ = w.WriteString(`</t></si>`)
			}
			_, _ = w.WriteString(`</sst>`)
			return w.Flush()
		}
	}
	return sheettest.Workbook(sheet, sst)
}

// validContacts is a contacts file: a header (姓名, 号码, 分组, 备注), then
// rows of a name, a number, a group and a note of noteLen random
// characters (in the shared strings table, as Excel writes them).
func validContacts(rows, noteLen int) []byte {
	sheet := func(out io.Writer) error {
		w := bufio.NewWriterSize(out, 64<<10)
		nums := rand.New(rand.NewPCG(3, 3))
		_, _ = w.WriteString(`<?xml version="1.0" encoding="UTF-8"?><worksheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"><sheetData><row r="1">`)
		for i, h := range []string{"姓名", "号码", "分组", "备注"} {
			_, _ = w.WriteString(sheettest.Inline(string(rune('A'+i))+"1", h))
		}
		_, _ = w.WriteString(`</row>`)
		for i := range rows {
			n := i + 2
			fmt.Fprintf(w, `<row r="%d"><c r="A%d" t="inlineStr"><is><t>联系人%d</t></is></c><c r="B%d"><v>%s</v></c>`+
				`<c r="C%d" t="inlineStr"><is><t>客户</t></is></c><c r="D%d" t="s"><v>%d</v></c></row>`,
				n, n, n, n, randomNumber(nums), n, n, i)
		}
		_, _ = w.WriteString(`</sheetData></worksheet>`)
		return w.Flush()
	}
	sst := func(out io.Writer) error {
		w := bufio.NewWriterSize(out, 64<<10)
		texts := rand.New(rand.NewPCG(4, 4))
		fmt.Fprintf(w, `<?xml version="1.0" encoding="UTF-8"?><sst xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main" count="%d" uniqueCount="%d">`, rows, rows)
		for range rows {
			_, _ = w.WriteString(`<si><t>`)
			randomText(w, texts, noteLen)
			_, _ = w.WriteString(`</t></si>`)
		}
		_, _ = w.WriteString(`</sst>`)
		return w.Flush()
	}
	return sheettest.Workbook(sheet, sst)
}

// postFile posts the file at path (size bytes) as the request body.
func postFile(t *testing.T, url, token, contentType, path string, size int64) (int, []byte) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	req, err := http.NewRequest("POST", url, f)
	if err != nil {
		t.Fatal(err)
	}
	req.ContentLength = size
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", contentType)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, b
}

// jobRead: how long a batch job of TestSoakValidXLSX reads its file before
// it is cancelled.
const jobRead = 15 * time.Second

// Issue 10's target for valid files: an XLSX upload as large as the API
// takes (a batch file of about 50 MiB, an address book of about 10 MiB)
// grows the daemon's peak RSS by less than 128 MiB, from the upload until
// the answer and, for a batch, while the job reads the file (alice's
// enterprise has a whitelist that holds none of the numbers: every row is
// refused, nothing sent).
func TestSoakValidXLSX(t *testing.T) {
	r := newBulkRig(t, rigOptions{})
	for _, tc := range []struct {
		name     string
		file     func() []byte
		rows     int // data rows
		path     string
		min, max int // bytes of the file
	}{
		{"batch, shared strings", func() []byte { return validBatch(300_000, 70, false) }, 300_000, "/v1/batches", 48 << 20, MaxBatchBody - 4<<10},
		{"batch, inline strings", func() []byte { return validBatch(290_000, 70, true) }, 290_000, "/v1/batches", 48 << 20, MaxBatchBody - 4<<10},
		{"contacts", func() []byte { return validContacts(10_000, 455) }, 10_000, "/v1/contacts/import", 9 << 20, maxContactsBody - 4<<10},
	} {
		t.Run(tc.name, func(t *testing.T) {
			file := tc.file()
			if len(file) < tc.min || len(file) > tc.max {
				t.Fatalf("the file has %d bytes, want %d to %d", len(file), tc.min, tc.max)
			}
			// The request body streams from a file: what the test holds
			// would otherwise count in the daemon's heap (the collector
			// lets the heap grow to twice what is live).
			ct, body := multipartBody(t, "名单.xlsx", file, nil)
			bodyPath := filepath.Join(t.TempDir(), "body")
			if err := os.WriteFile(bodyPath, body, 0o600); err != nil {
				t.Fatal(err)
			}
			size, n := int64(len(body)), len(file)
			file, body = nil, nil
			var (
				code         int
				b            []byte
				job          BatchJob
				answer, took time.Duration
			)
			c := client{t, r.url}
			key := r.keys["alice"]
			rss, alloc := peakGrowth(t, func() {
				start := time.Now()
				code, b = postFile(t, r.url+tc.path, key, ct, bodyPath, size)
				answer = time.Since(start)
				if tc.path == "/v1/batches" && code == http.StatusAccepted {
					var created BatchCreated
					if err := json.Unmarshal(b, &created); err != nil {
						t.Fatal(err)
					}
					// The job reads on at the enterprise's pace (each row
					// waits for it before the gateway refuses the number):
					// a while of it, then cancelled.
					time.Sleep(jobRead)
					if code, b := c.upload("DELETE", "/v1/batches/"+created.JobID, key, "", nil, nil); code != http.StatusOK {
						t.Fatalf("DELETE: %d %s", code, b)
					}
					job = c.waitJob(key, created.JobID, time.Minute, nil)
				}
				took = time.Since(start)
			})
			t.Logf("%s: %.1f MiB of XLSX (%d rows): answer %d in %v; peak RSS +%d MiB, allocated %d MiB in %v",
				tc.name, float64(n)/(1<<20), tc.rows, code, answer.Round(time.Millisecond), rss>>20, alloc>>20, took.Round(time.Millisecond))
			switch tc.path {
			case "/v1/batches":
				if code != http.StatusAccepted {
					t.Fatalf("answer %d %s", code, b)
				}
				t.Logf("job: %s, %d rows read, %d refused, %d unsent", job.State, job.RowsRead, job.Refused, job.Unsent)
				if job.State != JobCancelled || job.RowsRead == 0 {
					t.Errorf("job %+v", job)
				}
			default:
				var res ContactImport
				if code != http.StatusOK || json.Unmarshal(b, &res) != nil {
					t.Fatalf("answer %d %.300s", code, b)
				}
				t.Logf("import: %d rows, %d added, %d errors", res.Rows, res.Added, len(res.Errors))
				if res.Rows != tc.rows || res.Added == 0 {
					t.Errorf("import %d rows, %d added", res.Rows, res.Added)
				}
			}
			if !raceOn && rss >= 128<<20 {
				t.Errorf("peak RSS +%d MiB", rss>>20)
			}
		})
	}
}
