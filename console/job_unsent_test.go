package console

import (
	"bytes"
	"strings"
	"testing"

	"github.com/qxtd/qxtd/api"
)

// TestJobUnsentRows: a job's page lists the rows it did not send (the
// rows to send again), as the API gives them: single rows and ranges,
// and says when the list is cut. A job that sent everything shows none.
func TestJobUnsentRows(t *testing.T) {
	pages, err := parseTemplates()
	if err != nil {
		t.Fatal(err)
	}
	render := func(j api.BatchJob) string {
		t.Helper()
		var buf bytes.Buffer
		if err := pages["job"].t.ExecuteTemplate(&buf, "progress", &page{D: newJobView(j)}); err != nil {
			t.Fatal(err)
		}
		return buf.String()
	}
	out := render(api.BatchJob{ID: "j1", State: "cancelled", RowsRead: 12, Accepted: 8, Unsent: 4,
		UnsentRows: []api.RowRange{{From: 7, To: 7}, {From: 10, To: 12}}})
	if !strings.Contains(out, `id="job-unsent-rows"`) || !strings.Contains(out, "第 7 行、第 10–12 行") || strings.Contains(out, "其余未列出") {
		t.Fatalf("the unsent rows of a cancelled job:\n%s", out)
	}
	out = render(api.BatchJob{ID: "j2", State: "failed", Unsent: 5000, UnsentRows: []api.RowRange{{From: 1, To: 2}}, UnsentRowsCut: true})
	if !strings.Contains(out, "第 1–2 行，其余未列出") {
		t.Fatalf("a cut list:\n%s", out)
	}
	if out := render(api.BatchJob{ID: "j3", State: "done", RowsRead: 3, Accepted: 3}); strings.Contains(out, "job-unsent-rows") {
		t.Fatalf("a job that sent every row lists unsent rows:\n%s", out)
	}
	// Why a failed job stopped: in Chinese when the API says it so.
	out = render(api.BatchJob{ID: "j4", State: "failed", Reason: "invalid", Message: "the file cannot be read further: sheet: row 3: …",
		DetailZH: "文件第 3 行起无法读取，任务中止（…）"})
	if !strings.Contains(out, "（文件第 3 行起无法读取，任务中止（…））") || strings.Contains(out, "cannot be read") {
		t.Fatalf("a job failed at row 3:\n%s", out)
	}
	if out := render(api.BatchJob{ID: "j5", State: "failed", Reason: "internal", Message: "boom"}); !strings.Contains(out, "（boom）") {
		t.Fatalf("a job failed without a Chinese detail:\n%s", out)
	}
}

// TestCounterSegmentsMax: the counter under a text box says when an
// upstream making its parts another way would count more segments than
// the count shown (the API's segments_max), and says nothing more when
// every upstream counts alike.
func TestCounterSegmentsMax(t *testing.T) {
	pages, err := parseTemplates()
	if err != nil {
		t.Fatal(err)
	}
	render := func(v countView) string {
		t.Helper()
		var buf bytes.Buffer
		if err := pages["send_group"].t.ExecuteTemplate(&buf, "counter", v); err != nil {
			t.Fatal(err)
		}
		return buf.String()
	}
	out := render(countView{Chars: 134, Segments: 2, SegmentsMax: 3, MaxChars: 500, Encoding: "UCS-2"})
	if !strings.Contains(out, "按 <b class=\"segs\">2</b> 条计费") || !strings.Contains(out, "最多 3 条") {
		t.Fatalf("a text that counts 3 through another upstream:\n%s", out)
	}
	if out := render(countView{Chars: 7, Segments: 1, SegmentsMax: 1, MaxChars: 500}); strings.Contains(out, "segs-max") {
		t.Fatalf("every upstream counts alike, yet:\n%s", out)
	}
}
