package queue

import (
	"context"
	"testing"
	"time"
)

func TestMOStoreForwardInbox(t *testing.T) {
	ts := newStore(t, Options{NoSync: true})
	ctx := context.Background()
	store := func(ent, acct, text string) uint64 {
		t.Helper()
		m := &MO{Enterprise: ent, Account: acct, Source: "13712345678", Dest: "10657500112", Text: text, Upstream: "sim"}
		if err := ts.StoreMO(ctx, m); err != nil {
			t.Fatal(err)
		}
		return m.ID
	}
	a1 := store("E1", "alice", "one")
	e1 := store("E1", "", "two")
	b1 := store("E2", "bob", "three")
	u1 := store("", "", "nobody's")
	a2 := store("E1", "alice", "four")

	pending := func(ent string) []uint64 {
		t.Helper()
		list, err := ts.PendingMOs(ent, 0, nil)
		if err != nil {
			t.Fatal(err)
		}
		var ids []uint64
		for _, m := range list {
			ids = append(ids, m.ID)
		}
		return ids
	}
	if got := pending("E1"); len(got) != 3 || got[0] != a1 || got[1] != e1 || got[2] != a2 {
		t.Fatalf("pending E1 %v, want %d %d %d", got, a1, e1, a2)
	}
	if got := pending(""); len(got) != 0 {
		t.Fatalf("an MO without enterprise is never forwarded: %v", got)
	}
	if err := ts.AckMO(ctx, "E1", e1, time.Now()); err != nil {
		t.Fatal(err)
	}
	if err := ts.AckMO(ctx, "E1", e1, time.Now()); err != nil { // idempotent
		t.Fatal(err)
	}
	ts.reopen()
	if got := pending("E1"); len(got) != 2 || got[0] != a1 || got[1] != a2 {
		t.Fatalf("pending E1 after ack and reopen %v", got)
	}

	inbox := func(ent, acct string, before uint64, limit int) ([]uint64, uint64) {
		t.Helper()
		list, next, err := ts.Inbox(ent, acct, before, limit)
		if err != nil {
			t.Fatal(err)
		}
		var ids []uint64
		for _, m := range list {
			ids = append(ids, m.ID)
		}
		return ids, next
	}
	got, next := inbox("E1", "", 0, 2)
	if len(got) != 2 || got[0] != a2 || got[1] != e1 || next != e1 {
		t.Fatalf("E1 page 1: %v next %d", got, next)
	}
	got, next = inbox("E1", "", next, 2)
	if len(got) != 1 || got[0] != a1 || next != 0 {
		t.Fatalf("E1 page 2: %v next %d", got, next)
	}
	if got, _ := inbox("E1", "alice", 0, 10); len(got) != 2 || got[0] != a2 || got[1] != a1 {
		t.Fatalf("alice: %v", got)
	}
	if got, _ := inbox("E2", "", 0, 10); len(got) != 1 || got[0] != b1 {
		t.Fatalf("E2: %v", got)
	}
	if got, _ := inbox("", "", 0, 10); len(got) != 1 || got[0] != u1 {
		t.Fatalf("unmatched: %v", got)
	}
	list, _, _ := ts.Inbox("E1", "", 0, 10)
	if list[1].ForwardedAt.IsZero() || list[1].Text != "two" {
		t.Fatalf("acknowledged MO: %+v", list[1])
	}
}

// Retention deletes every reply received before the cutoff, with its
// keys: forwarded, owned by no enterprise, or still to forward (counted
// untaken: no receiver took it within the retention; before, it stayed,
// and every later purge decoded it again in the commit loop). Newer ones
// stay. The indexes stay consistent (Check).
func TestPurgeMOs(t *testing.T) {
	ts := newStore(t, Options{NoSync: true})
	ctx := context.Background()
	old := time.Date(2026, 1, 1, 8, 0, 0, 0, time.UTC)
	store := func(ent string, at time.Time) uint64 {
		t.Helper()
		m := &MO{Enterprise: ent, Source: "13712345678", Dest: "10657500112", Text: "TD", Upstream: "sim", ReceivedAt: at}
		if err := ts.StoreMO(ctx, m); err != nil {
			t.Fatal(err)
		}
		return m.ID
	}
	forwarded := store("E1", old)
	unowned := store("", old)
	waiting := store("E1", old)
	fresh := store("E1", old.Add(48*time.Hour))
	freshWaiting := store("E1", old.Add(48*time.Hour))
	if err := ts.AckMO(ctx, "E1", forwarded, old.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	if err := ts.AckMO(ctx, "E1", fresh, old.Add(49*time.Hour)); err != nil {
		t.Fatal(err)
	}
	cutoff := old.Add(24 * time.Hour)
	n, untaken, err := ts.PurgeMOs(ctx, cutoff, 100)
	if err != nil || n != 3 || untaken != 1 {
		t.Fatalf("PurgeMOs = %d (%d untaken), %v; want 3 (the forwarded, the unowned, the waiting: 1 untaken)", n, untaken, err)
	}
	ids := func(ent string) map[uint64]bool {
		list, _, err := ts.Inbox(ent, "", 0, 100)
		if err != nil {
			t.Fatal(err)
		}
		got := map[uint64]bool{}
		for _, m := range list {
			got[m.ID] = true
		}
		return got
	}
	if got := ids("E1"); len(got) != 2 || !got[fresh] || !got[freshWaiting] || got[forwarded] || got[waiting] {
		t.Errorf("E1's inbox after the purge: %v, want %d and %d", got, fresh, freshWaiting)
	}
	if got := ids(""); got[unowned] {
		t.Errorf("the unowned reply was kept: %v", got)
	}
	// Only the newer one is still to forward.
	pending, err := ts.PendingMOs("E1", 10, nil)
	if err != nil || len(pending) != 1 || pending[0].ID != freshWaiting {
		t.Errorf("still to forward after the purge: %v, %v; want only %d", pending, err, freshWaiting)
	}
	if err := ts.Check(); err != nil {
		t.Fatal(err)
	}
	if n, _, err := ts.PurgeMOs(ctx, cutoff, 100); err != nil || n != 0 {
		t.Errorf("a second purge: %d, %v", n, err)
	}
	ts.reopen()
	if got := ids("E1"); len(got) != 2 {
		t.Errorf("after reopen: %v", got)
	}
}
