package queue

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// damage overwrites message id's record with bytes that do not decode,
// behind the store's back.
func damage(t *testing.T, s *Store, id uint64) {
	t.Helper()
	if err := s.db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketMsg).Put(msgKey(id), []byte{0xff})
	}); err != nil {
		t.Fatal(err)
	}
}

// One damaged message record does not stop the others: the dispatcher's
// scan, an account's pending receipts and the enterprise's outbox skip it
// (and log it; Check reports it). Before, each failed as a whole on it, so
// nothing due after it was sent, none of the account's receipts went out
// and the outbox showed only an error.
func TestDamagedMessageSkipped(t *testing.T) {
	var logs bytes.Buffer
	s := newStore(t, Options{NoSync: true, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	at := time.Date(2026, 11, 2, 9, 0, 0, 0, shanghai)
	due := []*Message{exportMsg("G1", "alice", at, 1), exportMsg("G1", "alice", at, 1), exportMsg("G1", "alice", at, 1)}
	s.enqueue(due...)
	done := []*Message{exportMsg("G1", "bob", at, 1), exportMsg("G1", "bob", at, 1), exportMsg("G1", "bob", at, 1)}
	s.enqueue(done...)
	for _, m := range done {
		s.drive(m, at, StateDelivered)
	}
	damage(t, s.Store, due[1].ID)
	damage(t, s.Store, done[1].ID)

	jobs, err := s.Due(time.Now().Add(time.Hour), 0, nil)
	if err != nil {
		t.Fatalf("Due: %v", err)
	}
	got := map[uint64]bool{}
	for _, j := range jobs {
		got[j.Key.ID] = true
	}
	if len(jobs) != 2 || !got[due[0].ID] || !got[due[2].ID] {
		t.Errorf("due after a damaged message: %v, want %d and %d", got, due[0].ID, due[2].ID)
	}
	shared, err := s.DueShared(time.Now().Add(time.Hour), 10, func(string) int { return 10 }, nil)
	if err != nil || len(shared) != 2 {
		t.Errorf("DueShared: %d jobs, %v; want 2", len(shared), err)
	}
	pend, err := s.PendingDLRs("bob", 0, nil)
	if err != nil || len(pend) != 2 || pend[0].ID != done[0].ID || pend[1].ID != done[2].ID {
		t.Errorf("bob's pending receipts: %d, %v; want the two undamaged", len(pend), err)
	}
	// The enterprise's outbox lists the other four (it failed as a whole).
	listed, next, err := s.List(ListFilter{Enterprise: "G1"}, 0, 100)
	if err != nil || next != 0 || len(listed) != 4 {
		t.Errorf("outbox: %d messages (next %d), %v; want the four undamaged", len(listed), next, err)
	}
	for _, m := range listed {
		if m.ID == due[1].ID || m.ID == done[1].ID {
			t.Errorf("outbox lists damaged message %d", m.ID)
		}
	}
	// Each damaged record is logged once, not at every scan.
	for range 3 {
		if _, err := s.Due(time.Now().Add(time.Hour), 0, nil); err != nil {
			t.Fatal(err)
		}
		if _, err := s.PendingDLRs("bob", 0, nil); err != nil {
			t.Fatal(err)
		}
		if _, _, err := s.List(ListFilter{Enterprise: "G1"}, 0, 100); err != nil {
			t.Fatal(err)
		}
	}
	if n := strings.Count(logs.String(), "outbox skips a message that does not decode"); n != 2 {
		t.Errorf("the damaged messages were logged %d times by the outbox, want once each:\n%s", n, logs.String())
	}
	if n := strings.Count(logs.String(), "due message does not decode"); n != 1 {
		t.Errorf("the damaged due message was logged %d times, want once:\n%s", n, logs.String())
	}
	if n := strings.Count(logs.String(), "dlrout message does not decode"); n != 1 {
		t.Errorf("the damaged receipt's message was logged %d times, want once:\n%s", n, logs.String())
	}
	if err := s.Check(); err == nil {
		t.Error("Check does not report the damaged records")
	}
	if err := s.Close(); err != nil { // closed: the cleanup's check would fail on the damage
		t.Fatal(err)
	}
}
