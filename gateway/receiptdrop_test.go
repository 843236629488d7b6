package gateway_test

import (
	"errors"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fiorix/go-smpp/smpp/pdu"

	"github.com/qxtd/qxtd/queue"
	"github.com/qxtd/qxtd/smpp"
)

// TestReceiptCutByDropNotAStoreError: a receipt whose connection to the
// SMSC ends while it waits for its commit cannot be answered, and the
// SMSC sends it again; that is no store failure, so it is not logged as
// one (an SMSC that drops its binds with receipts in flight logged an
// error-level "store receipt … context canceled" for each: 100 in one
// run of TestSoakUpstreamChaos). The receipt sent again is taken.
func TestReceiptCutByDropNotAStoreError(t *testing.T) {
	var logs lockedBuffer
	var blocking atomic.Bool
	entered, release := make(chan struct{}, 1), make(chan struct{})
	r := newRig(t, rigOpts{
		sim: smpp.SimOptions{DLRDelay: 10 * time.Millisecond},
		store: func(o *queue.Options) {
			o.CommitFault = func() error {
				if blocking.Load() {
					select {
					case entered <- struct{}{}:
					default:
					}
					<-release // the disk, slow while the connection drops
				}
				return nil
			}
		},
		log: slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelInfo})),
	})
	// Before the rig's cleanup (cleanups run last first): a test that
	// fails with the commit held must not leave the store's Close waiting.
	unblock := sync.OnceFunc(func() { close(release) })
	t.Cleanup(unblock)
	e, err := r.bind("esme", "pw", smpp.BindTransceiver)
	if err != nil {
		t.Fatal(err)
	}
	submitN(t, e, 1, "1380000") // and its receipt: the binds are up
	e.waitReceipts(t, 1, 20*time.Second)
	// The receipt's acknowledgement recorded: the store has nothing
	// else to write, so the next commit is the injected receipt's.
	waitFor(t, 10*time.Second, "the receipt's acknowledgement recorded", func() bool {
		ms, err := r.store.PendingDLRs("esme", 10, nil)
		return err == nil && len(ms) == 0
	})

	blocking.Store(true)
	injected := make(chan error, 1)
	go func() { injected <- r.sim.InjectReceipt("abc001", "13900000000", "1069") }()
	select {
	case <-entered:
	case <-time.After(10 * time.Second):
		t.Fatal("the receipt's commit never began")
	}
	r.sim.DropConnections()
	if err := <-injected; err == nil {
		t.Fatal("the receipt was answered although its commit was held")
	}
	// Both binds' sessions over: a session ends only once its handlers
	// returned, so the receipt's handler has given up its wait.
	waitFor(t, 10*time.Second, "both upstream sessions ended", func() bool {
		return strings.Count(logs.String(), `"msg":"upstream connection lost"`) >= 2
	})
	blocking.Store(false)
	unblock()

	if strings.Contains(logs.String(), `"level":"ERROR"`) {
		t.Errorf("a receipt cut off by a dropped connection logged as an error:\n%s", logs.String())
	}
	// The SMSC sends it again on a bind back: answered, kept once. (No
	// bind yet, or one of the dropped sessions not yet forgotten by the
	// simulator: again.)
	waitFor(t, 10*time.Second, "the receipt sent again taken", func() bool {
		err := r.sim.InjectReceipt("abc001", "13900000000", "1069")
		if st := pdu.Status(0); errors.As(err, &st) {
			t.Fatalf("receipt sent again: answered %v", st)
		}
		return err == nil
	})
	if got := r.store.OrphanCounts(); got["sim"] != 1 {
		t.Errorf("orphans kept %v, want sim: 1", got)
	}
}
