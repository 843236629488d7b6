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
}
