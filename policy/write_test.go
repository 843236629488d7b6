package policy

import (
	"errors"
	"sync/atomic"
	"testing"

	"github.com/qxtd/qxtd/queue"
)

// TestWriteThroughQueue: the daemon's policy writes through the queue's
// store (Config.Write = queue.Store.Update), the one writer of the state
// file that guards it after a failed sync. A write whose commit bbolt
// wrote but whose fdatasync failed is refused, yet it is what the file
// shows: the snapshot follows the file. The next write, the sync still
// failing, is refused before it writes anything; once the sync
// succeeds, writes go through. An error of the write's own is returned
// as is.
func TestWriteThroughQueue(t *testing.T) {
	db, _ := openDB(t)
	var failing atomic.Bool
	eio := errors.New("fdatasync: input/output error")
	st, err := queue.New(db, queue.Options{NoSync: true, SyncFault: func() error {
		if failing.Load() {
			return eio
		}
		return nil
	}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	cfg := testConfig(newClock())
	cfg.Write = st.Update
	p, err := New(db, cfg)
	if err != nil {
		t.Fatal(err)
	}

	failing.Store(true)
	_, err = p.CreateEnterprise(op, Enterprise{Code: "GD0755003", Name: "丙公司", Signature: "【丙公司】", Package: 1})
	if !errors.Is(err, queue.ErrNotSynced) {
		t.Fatalf("a write whose sync failed: %v, want queue.ErrNotSynced", err)
	}
	if _, ok := p.Lookup("GD0755003"); !ok {
		t.Fatal("the enterprise the file shows is not in the snapshot")
	}
	_, err = p.CreateEnterprise(op, Enterprise{Code: "GD0755004", Name: "丁公司", Signature: "【丁公司】", Package: 1})
	if err == nil || errors.Is(err, queue.ErrNotSynced) {
		t.Fatalf("a write with the sync still failing: %v, want refused before it wrote", err)
	}
	if _, ok := p.Lookup("GD0755004"); ok {
		t.Fatal("the refused enterprise is in the snapshot")
	}

	failing.Store(false)
	if _, err := p.CreateEnterprise(op, Enterprise{Code: "GD0755004", Name: "丁公司", Signature: "【丁公司】", Package: 1}); err != nil {
		t.Fatalf("a write once the sync succeeds: %v", err)
	}
	if _, ok := p.Lookup("GD0755004"); !ok {
		t.Fatal("the enterprise is not in the snapshot")
	}
	if _, err := p.CreateEnterprise(op, Enterprise{Code: "GD0755004", Name: "丁公司", Signature: "【丁公司】", Package: 1}); !errors.Is(err, ErrExists) {
		t.Fatalf("the same enterprise again: %v, want ErrExists as is", err)
	}
	// A restart reads the same as the snapshot showed.
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	p2, err := New(db, testConfig(newClock()))
	if err != nil {
		t.Fatal(err)
	}
	for _, code := range []string{"GD0755003", "GD0755004"} {
		if _, ok := p2.Lookup(code); !ok {
			t.Errorf("%s not in the file", code)
		}
	}
}
