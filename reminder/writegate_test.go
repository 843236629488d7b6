package reminder

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"
)

// TestWriteGateRefusesWrites: with the daemon's write gate closed (the
// queue's last commit written but not synced: queue.Store.WriteGate), a
// reminder is refused before anything is written to the shared file;
// once it opens, the same reminder is made.
func TestWriteGateRefusesWrites(t *testing.T) {
	_, addr := newSim(t)
	var closed atomic.Bool
	eio := errors.New("fdatasync: input/output error")
	r := openRig(t, tempPath(t), addr, 0, Config{Tick: time.Hour, WriteGate: func(context.Context) error {
		if closed.Load() {
			return eio
		}
		return nil
	}})
	spec := Spec{Text: "门控之后照常", Rule: Rule{Freq: Once, Start: time.Now().Add(2 * time.Hour).Truncate(time.Second)}}
	closed.Store(true)
	if _, err := r.svc.Create(r.user("alice"), spec); !errors.Is(err, eio) {
		t.Fatalf("a reminder with the gate closed: %v, want the gate's error", err)
	}
	if list, err := r.svc.List(Viewer{Enterprise: "A"}); err != nil || len(list) != 0 {
		t.Fatalf("reminders after the refusal: %d (%v), want none", len(list), err)
	}
	closed.Store(false)
	if _, err := r.svc.Create(r.user("alice"), spec); err != nil {
		t.Fatalf("the reminder with the gate open: %v", err)
	}
}
