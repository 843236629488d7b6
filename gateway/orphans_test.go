package gateway_test

import (
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/fiorix/go-smpp/smpp/pdu"

	"github.com/qxtd/qxtd/queue"
	"github.com/qxtd/qxtd/smpp"
)

// TestUnmatchedReceiptsBounded: an SMSC that sends receipts for messages
// that are not ours fills at most store.max_orphans of the store per
// upstream; past it each is answered ESME_RX_T_APPN (the SMSC sends it
// again later), counted, and warned about once, while receipts that
// match are taken as before.
func TestUnmatchedReceiptsBounded(t *testing.T) {
	var logs lockedBuffer
	r := newRig(t, rigOpts{
		sim:   smpp.SimOptions{DLRDelay: 10 * time.Millisecond},
		store: func(o *queue.Options) { o.MaxOrphans = 2 },
		log:   slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelInfo})),
	})
	e, err := r.bind("esme", "pw", smpp.BindTransceiver)
	if err != nil {
		t.Fatal(err)
	}
	submitN(t, e, 1, "1380000") // and its receipt: the binds are up
	e.waitReceipts(t, 1, 20*time.Second)

	for _, id := range []string{"abc001", "abc002"} {
		if err := r.sim.InjectReceipt(id, "13900000000", "1069"); err != nil {
			t.Fatalf("receipt %s, room for it: %v", id, err)
		}
	}
	for _, id := range []string{"abc003", "abc004", "abc003"} {
		err := r.sim.InjectReceipt(id, "13900000000", "1069")
		var st pdu.Status
		if !errors.As(err, &st) || st != smpp.StatusRxTApp {
			t.Errorf("receipt %s past store.max_orphans answered %v, want ESME_RX_T_APPN", id, err)
		}
	}
	if got := r.store.OrphanCounts(); got["sim"] != 2 || len(got) != 1 {
		t.Errorf("orphans kept %v, want sim: 2", got)
	}

	// Receipts that match are taken whatever the count (one that beats its
	// submit_sm_resp is refused, and taken when the SMSC sends it again).
	submitN(t, e, 20, "1380001")
	e.waitReceipts(t, 21, 30*time.Second)

	if got := counters(t, r)["qxtd_dlrs_received_total,result=refused,state=delivered"]; got < 3 {
		t.Errorf("qxtd_dlrs_received_total{result=refused} %v, want at least 3", got)
	}
	if n := strings.Count(logs.String(), "refused for now"); n != 1 {
		t.Errorf("%d warnings about refused receipts, want 1:\n%s", n, logs.String())
	}
}
