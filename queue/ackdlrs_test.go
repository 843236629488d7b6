package queue

import (
	"testing"
	"time"
)

// AckDLRs acknowledges many receipts of one account in one commit: the
// account's pending ones leave PendingDLRs; another account's, an unknown
// id, one already acknowledged and one not final are left alone.
func TestAckDLRs(t *testing.T) {
	s := newStore(t, Options{NoSync: true})
	at := time.Date(2026, 11, 2, 9, 0, 0, 0, shanghai)
	a1 := exportMsg("G1", "alice", at, 1)
	a2 := exportMsg("G1", "alice", at, 1)
	a3 := exportMsg("G1", "alice", at, 1)
	open := exportMsg("G1", "alice", at, 1)
	b1 := exportMsg("G2", "bob", at, 1)
	s.enqueue(a1, a2, a3, open, b1)
	for _, m := range []*Message{a1, a2, a3, b1} {
		s.drive(m, at, StateDelivered)
	}
	s.drive(open, at, StateSubmitted)
	if err := s.AckDLR(bg, "alice", a3.ID); err != nil {
		t.Fatal(err)
	}
	txns := s.Stats().Txns
	if err := s.AckDLRs(bg, "alice", []uint64{a1.ID, a2.ID, a3.ID, open.ID, b1.ID, 999999}); err != nil {
		t.Fatal(err)
	}
	if n := s.Stats().Txns - txns; n != 1 {
		t.Errorf("AckDLRs took %d commits, want 1", n)
	}
	if p, err := s.PendingDLRs("alice", 0, nil); err != nil || len(p) != 0 {
		t.Errorf("alice's pending receipts after AckDLRs: %d %v, want none", len(p), err)
	}
	if p, err := s.PendingDLRs("bob", 0, nil); err != nil || len(p) != 1 || p[0].ID != b1.ID {
		t.Errorf("bob's pending receipts: %v %v, want his one (not alice's to acknowledge)", p, err)
	}
	for _, m := range []*Message{a1, a2, a3} {
		if !s.get(m.ID).DLRForwarded {
			t.Errorf("message %d not marked forwarded", m.ID)
		}
	}
	if s.get(open.ID).DLRForwarded {
		t.Errorf("a message without its final receipt marked forwarded")
	}
	if err := s.Check(); err != nil {
		t.Fatal(err)
	}
}
