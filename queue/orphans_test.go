package queue

import (
	"errors"
	"fmt"
	"path/filepath"
	"testing"
	"time"
)

func TestNodeIDs(t *testing.T) {
	a := newStore(t, Options{NodeID: 1})
	b := newStore(t, Options{NodeID: 2})
	seen := map[uint64]uint16{}
	for range 5 {
		for node, s := range map[uint16]*testStore{1: a, 2: b} {
			m := msg("alice", "111", 1)
			s.enqueue(m)
			mo := &MO{Source: "138", Dest: "106", Text: "hi", Enterprise: "e"}
			if err := s.StoreMO(bg, mo); err != nil {
				t.Fatal(err)
			}
			for _, id := range []uint64{m.ID, mo.ID} {
				if got := NodeOf(id); got != node {
					t.Errorf("NodeOf(%d) = %d, want %d", id, got, node)
				}
			}
			if prev, dup := seen[m.ID]; dup {
				t.Fatalf("message id %d given by nodes %d and %d", m.ID, prev, node)
			}
			seen[m.ID] = node
		}
	}
	// Reopened, a store counts on within its range.
	last := a.get(maxID(seen, 1)).ID
	a.reopen()
	m := msg("alice", "111", 1)
	a.enqueue(m)
	if m.ID <= last || NodeOf(m.ID) != 1 {
		t.Errorf("after reopen: id %d (node %d), last %d", m.ID, NodeOf(m.ID), last)
	}
}

func maxID(ids map[uint64]uint16, node uint16) uint64 {
	var hi uint64
	for id, n := range ids {
		if n == node {
			hi = max(hi, id)
		}
	}
	return hi
}

func TestNodeIDOnOldFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "q.db")
	s := openStoreAt(t, path, Options{})
	old := msg("alice", "111", 1)
	s.enqueue(old)
	if NodeOf(old.ID) != 0 || old.ID != 1 {
		t.Fatalf("single-node id %d", old.ID)
	}
	// The same file in cluster mode: the old id stays, new ones are the node's.
	s.opt.NodeID = 3
	s.reopen()
	if got := s.get(old.ID); got.ID != old.ID {
		t.Fatalf("old message: %+v", got)
	}
	m := msg("alice", "111", 1)
	s.enqueue(m)
	if m.ID != 3<<48+1 {
		t.Errorf("first id of node 3: %d", m.ID)
	}
	// Another node's file is refused.
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(path, Options{NodeID: 2}); !errors.Is(err, ErrInvalid) {
		t.Errorf("node 2 opened node 3's file: %v", err)
	}
	if _, err := Open(path, Options{NodeID: 4}); !errors.Is(err, ErrInvalid) {
		t.Errorf("node 4 opened node 3's file: %v", err) // its messages' ids name node 3
	}
	s.open()
}

func TestApplyDLRIfKnown(t *testing.T) {
	s := newStore(t, Options{})
	m := msg("alice", "111", 1)
	s.enqueue(m)
	// Not known yet: nothing stored.
	r, _, err := s.ApplyDLRIfKnown(bg, DLR{Upstream: "up1", SMSCID: "ab", State: StateDelivered}, false)
	if err != nil || r != Unmatched {
		t.Fatalf("unknown id: %s, %v", r, err)
	}
	if n := s.bucketLen(bucketOrphan); n != 0 {
		t.Fatalf("%d orphans stored", n)
	}
	s.submitted(Key{m.ID, 0}, "AB")
	r, sub, err := s.ApplyDLRIfKnown(bg, DLR{Upstream: "up1", SMSCID: "ab", State: StateDelivered}, false)
	if err != nil || r != Matched || sub.IsZero() {
		t.Fatalf("known id: %s, %v, %v", r, sub, err)
	}
	if r, _, _ := s.ApplyDLRIfKnown(bg, DLR{Upstream: "up1", SMSCID: "ab", State: StateDelivered}, false); r != Duplicate {
		t.Errorf("again: %s", r)
	}
	// A receipt received long before the part was submitted is for an
	// earlier message under the same (reused) id.
	m2 := msg("alice", "111", 1)
	s.enqueue(m2)
	s.submitted(Key{m2.ID, 0}, "cd")
	old := DLR{Upstream: "up1", SMSCID: "cd", State: StateDelivered, DoneAt: time.Now().Add(-time.Hour)}
	if r, _, _ := s.ApplyDLRIfKnown(bg, old, false); r != Unmatched {
		t.Errorf("receipt from before the submit: %s", r)
	}
	s.wantUsage("alice", 1, 1)
}

func TestOrphansListAndDelete(t *testing.T) {
	s := newStore(t, Options{})
	for _, id := range []string{"a1", "a2", "a3", "a4", "a5"} {
		s.dlr("up1", id, StateDelivered)
	}
	var all []OrphanDLR
	var after []byte
	for pages := 0; ; pages++ {
		got, next, err := s.Orphans(bg, after, 2)
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, got...)
		if next == nil {
			break
		}
		if pages > 5 {
			t.Fatal("paging does not end")
		}
		after = next
	}
	if len(all) != 5 || all[0].DLR.SMSCID != "a1" || all[4].DLR.SMSCID != "a5" || all[0].ReceivedAt.IsZero() {
		t.Fatalf("orphans: %+v", all)
	}

	// a2 was stored again since it was listed: kept.
	s.dlr("up1", "a2", StateExpired)
	n, err := s.DeleteOrphans(bg, all[:3])
	if err != nil || n != 2 {
		t.Fatalf("deleted %d, %v", n, err)
	}
	if n, _ := s.DeleteOrphans(bg, all[:3]); n != 0 {
		t.Errorf("deleted again: %d", n)
	}
	left, _, _ := s.Orphans(bg, nil, 10)
	if len(left) != 3 || left[0].DLR.SMSCID != "a2" || left[0].DLR.State != StateExpired {
		t.Errorf("left: %+v", left)
	}

	// A local Submitted still takes the local orphan first.
	m := msg("alice", "111", 1)
	s.enqueue(m)
	s.submitted(Key{m.ID, 0}, "a4")
	if st := s.get(m.ID).Parts[0].State; st != StateDelivered {
		t.Errorf("local orphan not applied: %s", st)
	}
	if left, _, _ := s.Orphans(bg, nil, 10); len(left) != 2 {
		t.Errorf("orphans after local match: %+v", left)
	}
}

// TestMaxOrphans: an upstream keeps at most MaxOrphans receipts that
// matched nothing; past it a new one is refused (ErrOrphansFull, nothing
// written) while a repeat of a kept one, a receipt that matches, and
// another upstream's orphans are taken. Matching, deleting and purging
// free room, and the count survives a reopen.
func TestMaxOrphans(t *testing.T) {
	s := newStore(t, Options{MaxOrphans: 3})
	for _, id := range []string{"a1", "a2", "a3"} {
		s.dlr("up1", id, StateDelivered)
	}
	full := func(upstream, id string) {
		t.Helper()
		res, err := s.ApplyDLR(bg, DLR{Upstream: upstream, SMSCID: id, State: StateDelivered, DoneAt: time.Now()})
		if !errors.Is(err, ErrOrphansFull) {
			t.Fatalf("a fourth orphan of %s: %v, %v; want ErrOrphansFull", upstream, res, err)
		}
	}
	full("up1", "a4")
	if got := s.OrphanCounts(); got["up1"] != 3 || len(got) != 1 {
		t.Fatalf("orphan counts %v, want up1: 3", got)
	}
	if r := s.dlr("up1", "A2", StateExpired); r != Orphaned { // the same id again: no new one
		t.Errorf("a repeated receipt: %v", r)
	}
	if r := s.dlr("up2", "a4", StateDelivered); r != Orphaned {
		t.Errorf("another upstream's orphan: %v", r)
	}
	m := msg("alice", "111", 2)
	s.enqueue(m)
	s.submitted(Key{m.ID, 0}, "b1")
	if r := s.dlr("up1", "b1", StateDelivered); r != Matched {
		t.Errorf("a receipt that matches, while full: %v", r)
	}
	full("up1", "a4")

	// A Submitted takes an orphan: room for one more.
	s.submitted(Key{m.ID, 1}, "a1")
	if st := s.get(m.ID).Parts[1].State; st != StateDelivered {
		t.Fatalf("orphan a1 not applied: %s", st)
	}
	if r := s.dlr("up1", "a4", StateDelivered); r != Orphaned {
		t.Errorf("after one was taken: %v", r)
	}
	full("up1", "a5")

	s.reopen()
	if got := s.OrphanCounts(); got["up1"] != 3 || got["up2"] != 1 {
		t.Fatalf("after reopen: orphan counts %v", got)
	}
	full("up1", "a5")

	// Deleting (a peer matched it) and purging free room too.
	list, _, err := s.Orphans(bg, nil, 1)
	if err != nil || len(list) != 1 {
		t.Fatal(list, err)
	}
	if n, err := s.DeleteOrphans(bg, list); n != 1 || err != nil {
		t.Fatal(n, err)
	}
	if r := s.dlr("up1", "a5", StateDelivered); r != Orphaned {
		t.Errorf("after one was deleted: %v", r)
	}
	if n, err := s.PurgeOrphans(bg, time.Now().Add(time.Minute), 100); n != 4 || err != nil {
		t.Fatalf("purged %d, %v; want all 4", n, err)
	}
	if got := s.OrphanCounts(); len(got) != 0 {
		t.Errorf("after the purge: orphan counts %v", got)
	}
}

// TestMaxOrphansInOneCommit: receipts racing into one commit are held to
// the bound too: of ten at once with room for three, three are kept.
func TestMaxOrphansInOneCommit(t *testing.T) {
	s := newStore(t, Options{MaxOrphans: 3})
	errs := make(chan error, 10)
	for i := range 10 {
		go func() {
			_, err := s.ApplyDLR(bg, DLR{Upstream: "up1", SMSCID: fmt.Sprintf("c%d", i), State: StateDelivered, DoneAt: time.Now()})
			errs <- err
		}()
	}
	var kept, full int
	for range 10 {
		switch err := <-errs; {
		case err == nil:
			kept++
		case errors.Is(err, ErrOrphansFull):
			full++
		default:
			t.Fatal(err)
		}
	}
	if kept != 3 || full != 7 || s.OrphanCounts()["up1"] != 3 {
		t.Errorf("kept %d, refused %d, counted %v; want 3, 7, 3", kept, full, s.OrphanCounts())
	}
}
