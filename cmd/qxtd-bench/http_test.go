package main

import (
	"bytes"
	"context"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestHTTPScenarios runs the HTTP scenarios small: qxtd (built from this
// tree) behind its HTTP API and Kannel (Debian's kannel package, which
// .ci/run installs) behind sendsms, each without and with receipts pushed
// back to the client, a message a request, in bulk (7 numbers a request,
// so the last request of 300 carries 6) and personalized (7 numbers, each
// its own text). Every message must be
// accepted and relayed, every receipt matched once, and the report must
// set qxtd against Kannel.
func TestHTTPScenarios(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	bin := buildQxtd(t, ctx)
	peer := startTestPeer(t, ctx, 10*time.Millisecond)
	cfg := benchConfig{N: 300, Warmup: 30, Window: 20, Bulk: 7, BulkWindow: 3, Stall: 10 * time.Second}
	o := daemonOpts{Bin: bin, BaseConfig: "../../configs/qxtd.yaml", PeerAddr: peer.Addr(), Binds: 2, Window: 50}
	var results []Result
	for _, name := range []string{"qxtd-http/no-receipts", "qxtd-http/receipts", "kannel/no-receipts", "kannel/receipts",
		"qxtd-http-bulk/no-receipts", "qxtd-http-bulk/receipts", "kannel-bulk/no-receipts", "kannel-bulk/receipts",
		"qxtd-http-personal/no-receipts", "qxtd-http-personal/receipts"} {
		sc := extraScenario(t, name)
		began := time.Now()
		res, lines, err := runOne(ctx, cfg, o, sc, peer, nil)
		t.Logf("%s: %v", name, time.Since(began).Round(time.Millisecond))
		if err != nil {
			t.Fatalf("%s: %v (gateway log: %q)", name, err, lines)
		}
		if res.Answered != cfg.N || res.Errors != 0 {
			t.Errorf("%s: %d of %d accepted, %d errors (%s)", name, res.Answered, cfg.N, res.Errors, res.FirstErr)
		}
		want := 0
		if sc.Receipts {
			want = cfg.N
			if res.ReceiptP50 < 10 {
				t.Errorf("%s: receipt p50 %.2f ms, below the peer's 10 ms delay", name, res.ReceiptP50)
			}
		}
		if sc.Kannel {
			// Kannel drops a receipt that overtakes its submit_sm_resp
			// (it says so, and the report counts them); qxtd drops none.
			want -= res.DroppedReceipts
		} else if res.DroppedReceipts != 0 {
			t.Errorf("%s: %d receipts dropped", name, res.DroppedReceipts)
		}
		if res.ReceiptsGot != want || res.DupReceipts != 0 {
			t.Errorf("%s: %d receipts matched (%d duplicate), want %d", name, res.ReceiptsGot, res.DupReceipts, want)
		}
		if sc.Bulk && (res.Bulk != cfg.Bulk || res.Window != cfg.BulkWindow) || !sc.Bulk && (res.Bulk != 0 || res.Window != cfg.Window) {
			t.Errorf("%s: reported %d recipients a request, %d outstanding", name, res.Bulk, res.Window)
		}
		if res.RelayedRate <= 0 || res.GatewayCPU <= 0 {
			t.Errorf("%s: no relayed rate or gateway CPU: %+v", name, res)
		}
		results = append(results, res)
	}
	// Receipts in batches (receipt_batch): each one still matched once.
	ob := o
	ob.ReceiptBatch = 10
	res, lines, err := runOne(ctx, cfg, ob, extraScenario(t, "qxtd-http-bulk/receipts"), peer, nil)
	if err != nil {
		t.Fatalf("qxtd-http-bulk/receipts with receipt_batch 10: %v (gateway log: %q)", err, lines)
	}
	if res.ReceiptsGot != cfg.N || res.DupReceipts != 0 {
		t.Errorf("receipt_batch 10: %d receipts matched (%d duplicate), want %d", res.ReceiptsGot, res.DupReceipts, cfg.N)
	}
	var buf bytes.Buffer
	writeTable(&buf, results)
	for _, want := range []string{"qxtd-http/no-receipts against kannel/no-receipts: relayed rate", "qxtd-http/receipts against kannel/receipts: relayed rate",
		"qxtd-http-bulk/no-receipts against kannel-bulk/no-receipts: relayed rate", "qxtd-http-bulk/receipts against kannel-bulk/receipts: relayed rate",
		"qxtd-http-personal/no-receipts against kannel/no-receipts: relayed rate"} {
		if !strings.Contains(buf.String(), want) {
			t.Errorf("report lacks %q:\n%s", want, buf.String())
		}
	}
}

// buildQxtd builds qxtd from this tree into the test's directory.
func buildQxtd(t *testing.T, ctx context.Context) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "qxtd")
	if out, err := exec.CommandContext(ctx, "go", "build", "-o", bin, "github.com/qxtd/qxtd/cmd/qxtd").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// extraScenario is the scenario run only when named that is called name.
func extraScenario(t *testing.T, name string) scenario {
	t.Helper()
	for _, s := range extraScenarios {
		if s.Name == name {
			return s
		}
	}
	t.Fatalf("no scenario %q", name)
	return scenario{}
}
