package queue

import "testing"

// Stats.Written counts the pages the commits wrote: at least a changed
// leaf and the meta page a commit, whole pages, and about as much for a
// commit of one message as for one of fifty (what makes a commit's cost
// to the disk independent of what it carries).
func TestStatsWritten(t *testing.T) {
	s := newStore(t, Options{NoSync: true})
	page := uint64(s.db.Info().PageSize)
	written := func(do func()) (bytes, commits uint64) {
		t.Helper()
		st0 := s.Stats()
		do()
		st1 := s.Stats()
		return st1.Written - st0.Written, st1.Txns - st0.Txns
	}

	one, commits := written(func() { s.enqueue(msg("alice", "13800000001", 1)) })
	if commits != 1 {
		t.Fatalf("one Enqueue took %d commits", commits)
	}
	if one < 2*page || one%page != 0 {
		t.Errorf("a commit of one message wrote %d bytes: want whole pages, at least a leaf and the meta page (%d each)", one, page)
	}

	var batch []*Message
	for range 50 {
		batch = append(batch, msg("alice", "13800000002", 1))
	}
	fifty, commits := written(func() { s.enqueue(batch...) })
	if commits != 1 {
		t.Fatalf("one Enqueue of 50 took %d commits", commits)
	}
	if fifty < one || fifty > 8*one {
		t.Errorf("a commit of 50 messages wrote %d bytes, one of 1 message %d: want the same order", fifty, one)
	}
	t.Logf("one message: %d pages; fifty in one commit: %d pages", one/page, fifty/page)
}
