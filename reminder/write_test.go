package reminder

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/qxtd/qxtd/queue"
)

// TestWriteThroughQueue: the reminders write the state file through the
// queue's store, as the daemon wires them (Config.Write =
// queue.Store.Update). A reminder whose commit was written but not
// synced is refused and yet stands (the file shows it); while the sync
// fails, the next is refused before anything is written; once it
// succeeds, reminders are made again.
func TestWriteThroughQueue(t *testing.T) {
	_, addr := newSim(t)
	r := openRig(t, tempPath(t), addr, 0, Config{Tick: time.Hour})
	spec := Spec{Text: "写盘失败之后照常", Rule: Rule{Freq: Once, Start: time.Now().Add(2 * time.Hour).Truncate(time.Second)}}
	// The first commit once the disk fails must be the reminder's: the
	// gateway's writes may take it, the reminder then refused unwritten.
	for try := 0; ; try++ {
		if try == 20 {
			t.Fatal("in 20 tries, no reminder was the commit whose sync failed")
		}
		r.failing.Store(true)
		_, err := r.svc.Create(r.user("alice"), spec)
		if err == nil {
			t.Fatal("a reminder made while the disk fails")
		}
		list, lerr := r.svc.List(Viewer{Enterprise: "A"})
		if lerr != nil {
			t.Fatal(lerr)
		}
		if errors.Is(err, queue.ErrNotSynced) {
			if len(list) != 1 {
				t.Fatalf("reminders after the unsynced write: %d, want the 1 the file shows", len(list))
			}
			break
		}
		if len(list) != 0 {
			t.Fatalf("reminders after a refused write (%v): %d, want none", err, len(list))
		}
		r.failing.Store(false)
		if err := r.store.Probe(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := r.svc.Create(r.user("alice"), spec); err == nil || errors.Is(err, queue.ErrNotSynced) {
		t.Fatalf("a reminder with the sync still failing: %v, want refused before it wrote", err)
	}
	if list, err := r.svc.List(Viewer{Enterprise: "A"}); err != nil || len(list) != 1 {
		t.Fatalf("reminders after the refusal: %d (%v), want 1", len(list), err)
	}
	r.failing.Store(false)
	if _, err := r.svc.Create(r.user("alice"), spec); err != nil {
		t.Fatalf("a reminder once the sync succeeds: %v", err)
	}
	if list, err := r.svc.List(Viewer{Enterprise: "A"}); err != nil || len(list) != 2 {
		t.Fatalf("reminders: %d (%v), want 2", len(list), err)
	}
}
