package api

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/qxtd/qxtd/queue"
)

// failWriter refuses every write: a full disk under the client.
type failWriter struct{}

func (failWriter) Write([]byte) (int, error) { return 0, errors.New("disk full") }

// TestClientOps: the streaming operations of Client against the real API
// over a store with traffic, and against servers that break off.
func TestClientOps(t *testing.T) {
	e := newOpsEnv(t)
	e.enterprise("G1", "演示", 1)
	nov := time.Date(2026, 11, 1, 0, 0, 0, 0, shanghai)
	e.send("G1", nov.Add(time.Hour), nov.Add(2*time.Hour), queue.StateDelivered, queue.StateDelivered)
	e.send("G1", nov.Add(time.Hour), nov.Add(2*time.Hour), queue.StateUndeliverable)
	ctx := context.Background()
	cl := &Client{Base: e.srv.URL, Token: opsToken}

	var buf bytes.Buffer
	rows, n, err := cl.ExportDLR(ctx, ExportQuery{From: nov, To: nov.AddDate(0, 1, 0), Enterprise: "G1"}, &buf)
	if err != nil || rows != 3 || n != int64(buf.Len()) || strings.Count(buf.String(), "\n") != 4 {
		t.Errorf("export: rows %d, %d bytes, %v:\n%s", rows, n, err, buf.String())
	}
	buf.Reset()
	rows, _, err = cl.ExportDLR(ctx, ExportQuery{From: nov, To: nov.AddDate(0, 1, 0), Format: "jsonl"}, &buf)
	if err != nil || rows != 3 || strings.Count(buf.String(), "\n") != 3 || !strings.HasPrefix(buf.String(), "{") {
		t.Errorf("jsonl export: rows %d, %v:\n%s", rows, err, buf.String())
	}
	if _, _, err := cl.ExportDLR(ctx, ExportQuery{From: nov, To: nov.AddDate(0, 1, 0)}, failWriter{}); !errors.Is(err, ErrIncomplete) {
		t.Errorf("export into a failing writer: %v", err)
	}

	bills, err := cl.Bill(ctx, "2026-11", "")
	if err != nil || len(bills) != 1 || bills[0].Enterprise != "G1" || bills[0].Delivered != 2 {
		t.Errorf("bill: %+v %v", bills, err)
	}
	var ae *APIError
	if _, err := cl.Bill(ctx, "2026-11", "NOPE"); !errors.As(err, &ae) || ae.Reason != "not_found" {
		t.Errorf("bill of an unknown enterprise: %v", err)
	}

	buf.Reset()
	n, err = cl.Backup(ctx, &buf)
	if err != nil || n != int64(buf.Len()) || n < 4096 {
		t.Errorf("backup: %d bytes (%d buffered), %v", n, buf.Len(), err)
	}
	wrong := &Client{Base: e.srv.URL, Token: "wrong"}
	if _, err := wrong.Backup(ctx, &buf); !errors.As(err, &ae) || ae.Status != http.StatusUnauthorized {
		t.Errorf("backup with a wrong token: %v", err)
	}

	// A server that breaks off: the export without its trailer, the
	// backup short of its Content-Length.
	broken := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/backup") {
			w.Header().Set("Content-Length", "8192")
		}
		w.Write(make([]byte, 100))
	}))
	defer broken.Close()
	bc := &Client{Base: broken.URL, Token: "x"}
	if _, n, err := bc.ExportDLR(ctx, ExportQuery{From: nov, To: nov}, &buf); !errors.Is(err, ErrIncomplete) || n != 100 {
		t.Errorf("export without trailer: %d bytes, %v", n, err)
	}
	if n, err := bc.Backup(ctx, &buf); !errors.Is(err, ErrIncomplete) || n != 100 {
		t.Errorf("truncated backup: %d bytes, %v", n, err)
	}
}
