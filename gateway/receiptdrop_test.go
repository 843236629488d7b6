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
// run of TestSoakUpstreamChaos). The receipt sent again is taken. A
// reply (MO) likewise.
func TestReceiptCutByDropNotAStoreError(t *testing.T) {
	// The held commit lands once released: a receipt sent again then
	// matches the one stored, without effect; a reply sent again is taken
	// for the SMSC's resend of the one stored as its connection was cut
	// (moagain.go), and not stored again (before 2026-12-06: a second
	// reply, as it still is after a crash).
	for _, tc := range []struct {
		name   string
		inject func(*rig) error
		kept   func(*testing.T, *rig) int
		want   int
	}{
		{"receipt", func(r *rig) error { return r.sim.InjectReceipt("abc001", "13900000000", "1069") },
			func(t *testing.T, r *rig) int { return r.store.OrphanCounts()["sim"] }, 1},
		{"reply", func(r *rig) error { return r.sim.InjectMO("13900000000", "1069", "收到") },
			func(t *testing.T, r *rig) int {
				list, _, err := r.store.Inbox("", queue.InboxFilter{}, 0, 10)
				if err != nil {
					t.Fatal(err)
				}
				return len(list)
			}, 1},
	} {
		t.Run(tc.name, func(t *testing.T) { cutByDrop(t, tc.inject, tc.kept, tc.want) })
	}
}

// cutByDrop injects one receipt or reply (inject) while its commit is
// held, drops the binds, then checks nothing was logged as an error and
// that, sent again, it is taken, and kept (kept counts it) want times.
func cutByDrop(t *testing.T, inject func(*rig) error, kept func(*testing.T, *rig) int, want int) {
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
	go func() { injected <- inject(r) }()
	select {
	case <-entered:
	case <-time.After(10 * time.Second):
		t.Fatal("the commit never began")
	}
	r.sim.DropConnections()
	if err := <-injected; err == nil {
		t.Fatal("answered although its commit was held")
	}
	// Both binds' sessions over: a session ends only once its handlers
	// returned, so the receipt's handler has given up its wait.
	waitFor(t, 10*time.Second, "both upstream sessions ended", func() bool {
		return strings.Count(logs.String(), `"msg":"upstream connection lost"`) >= 2
	})
	blocking.Store(false)
	unblock()

	if strings.Contains(logs.String(), `"level":"ERROR"`) {
		t.Errorf("cut off by a dropped connection, logged as an error:\n%s", logs.String())
	}
	// The SMSC sends it again on a bind back: answered, kept once. (No
	// bind yet, or one of the dropped sessions not yet forgotten by the
	// simulator: again.)
	waitFor(t, 10*time.Second, "sent again, taken", func() bool {
		err := inject(r)
		if st := pdu.Status(0); errors.As(err, &st) {
			t.Fatalf("sent again: answered %v", st)
		}
		return err == nil
	})
	if got := kept(t, r); got != want {
		t.Errorf("kept %d, want %d", got, want)
	}
}
