package queue

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"
)

func TestReceiptHookLifecycle(t *testing.T) {
	var wakes atomic.Int32
	s := newStore(t, Options{})
	s.SetHookCallback(func(ents []string) {
		if len(ents) != 1 || ents[0] != "ent1" {
			t.Errorf("OnHookReady(%q), want ent1 once", ents)
		}
		wakes.Add(1)
	})
	ctx := context.Background()

	m := msg("alice", "13712345678", 2)
	m.Enterprise = "ent1"
	m.ReceiptURL = "https://example.com/r"
	plain := msg("alice", "13712345679", 1)
	plain.Enterprise = "ent1"
	m.RegisteredDelivery, plain.RegisteredDelivery = 0, 0 // no ESME receipts: only the webhook holds m back
	s.enqueue(m, plain)
	if got := s.get(m.ID).ReceiptURL; got != m.ReceiptURL {
		t.Fatalf("receipt url stored as %q", got)
	}
	s.submitted(Key{m.ID, 0}, "a1")
	s.submitted(Key{m.ID, 1}, "a2")
	s.submitted(Key{plain.ID, 0}, "a3")
	s.dlr("up1", "a3", StateDelivered)
	s.dlr("up1", "a1", StateDelivered)
	if hs, _ := s.DueHooks("ent1", time.Now(), 0, nil); len(hs) != 0 {
		t.Fatalf("hook due before the message is final: %+v", hs)
	}
	s.dlr("up1", "a2", StateUndeliverable)
	if wakes.Load() == 0 {
		t.Error("OnHookReady not called")
	}
	ents, err := s.HookEnterprises()
	if err != nil || len(ents) != 1 || ents[0] != "ent1" {
		t.Fatalf("hook enterprises: %v %v", ents, err)
	}
	hs, err := s.DueHooks("ent1", time.Now(), 0, nil)
	if err != nil || len(hs) != 1 || hs[0].Msg.ID != m.ID || hs[0].Attempts != 0 {
		t.Fatalf("due hooks: %+v %v", hs, err)
	}
	// A failure moves it later: not due now, due then, the attempt counted.
	next := time.Now().Add(time.Minute)
	if err := s.RetryHook(ctx, hs[0], next); err != nil {
		t.Fatal(err)
	}
	if hs2, _ := s.DueHooks("ent1", time.Now(), 0, nil); len(hs2) != 0 {
		t.Fatalf("hook due before its retry time: %+v", hs2)
	}
	s.reopen() // durable
	hs, _ = s.DueHooks("ent1", next, 0, nil)
	if len(hs) != 1 || hs[0].Attempts != 1 {
		t.Fatalf("after retry and reopen: %+v", hs)
	}
	if n, _ := s.HookPending(); n != 1 {
		t.Errorf("pending %d", n)
	}
	// Purge keeps it until the hook is done.
	if n, err := s.Purge(ctx, time.Now().Add(time.Hour), 100); err != nil || n != 1 {
		t.Fatalf("purge before ack: %d %v (want only the plain message)", n, err)
	}
	if err := s.AckHook(ctx, hs[0]); err != nil {
		t.Fatal(err)
	}
	if err := s.AckHook(ctx, hs[0]); err != nil {
		t.Fatalf("second ack: %v", err)
	}
	if !s.get(m.ID).ReceiptDone {
		t.Error("ReceiptDone not set")
	}
	if n, _ := s.HookPending(); n != 0 {
		t.Errorf("pending %d after ack", n)
	}
	if ents, _ := s.HookEnterprises(); len(ents) != 0 {
		t.Errorf("enterprises after ack: %v", ents)
	}
}

func TestReceiptHookOnCancelAndFairList(t *testing.T) {
	s := newStore(t, Options{})
	ctx := context.Background()
	var ids []uint64
	for _, e := range []string{"b", "a", "ab", "c"} {
		m := msg("u"+e, "13712345678", 1)
		m.Enterprise = e
		m.ReceiptURL = "http://127.0.0.1/x"
		m.SendAt = time.Now().Add(time.Hour)
		s.enqueue(m)
		ids = append(ids, m.ID)
		if err := s.Cancel(ctx, m.ID, e); err != nil {
			t.Fatal(err)
		}
	}
	ents, err := s.HookEnterprises()
	if err != nil || len(ents) != 4 || ents[0] != "a" || ents[1] != "ab" || ents[2] != "b" || ents[3] != "c" {
		t.Fatalf("enterprises: %v %v", ents, err)
	}
	hs, _ := s.DueHooks("a", time.Now(), 0, nil)
	if len(hs) != 1 || hs[0].Msg.ID != ids[1] || hs[0].Msg.State() != StateCancelled {
		t.Fatalf("due for a: %+v", hs)
	}
	if hs, _ := s.DueHooks("a", time.Now(), 0, func(uint64) bool { return true }); len(hs) != 0 {
		t.Fatalf("skip ignored: %+v", hs)
	}
}

func TestReceiptURLRoundTrip(t *testing.T) {
	m := msg("alice", "13712345678", 1)
	m.ID = 7
	m.Parts[0].State = StateDelivered
	m.ReceiptURL = "https://example.com/receipts?x=1"
	m.ReceiptDone = true
	got, err := DecodeMessage(encodeMessage(nil, m))
	if err != nil || got.ReceiptURL != m.ReceiptURL || !got.ReceiptDone {
		t.Fatalf("round trip: %+v %v", got, err)
	}
}

// DueHooksNext says when the enterprise's next receipt is due: now while
// the limit left some due, the due time of a retried one, none when every
// one was returned or skipped.
func TestDueHooksNext(t *testing.T) {
	s := newStore(t, Options{NoSync: true})
	ctx := context.Background()
	var ms []*Message
	for i := range 3 {
		m := msg("alice", "1371234567"+string(rune('0'+i)), 1)
		m.Enterprise, m.ReceiptURL, m.RegisteredDelivery = "ent1", "https://example.com/r", 0
		s.enqueue(m)
		s.submitted(Key{m.ID, 0}, "n"+string(rune('0'+i)))
		s.dlr("up1", "n"+string(rune('0'+i)), StateDelivered)
		ms = append(ms, m)
	}
	now := time.Now()
	hs, next, err := s.DueHooksNext("ent1", now, 2, nil)
	if err != nil || len(hs) != 2 || !next.Equal(now) {
		t.Fatalf("limit 2 of 3: %d hooks, next %v (%v); want 2 and now", len(hs), next, err)
	}
	later := now.Add(time.Hour)
	if err := s.RetryHook(ctx, hs[0], later); err != nil {
		t.Fatal(err)
	}
	inflight := func(id uint64) bool { return id == hs[1].Msg.ID }
	hs2, next, err := s.DueHooksNext("ent1", now, 0, inflight)
	if err != nil || len(hs2) != 1 || hs2[0].Msg.ID != ms[2].ID || !next.Equal(later.Truncate(time.Nanosecond)) {
		t.Fatalf("after a retry: %d hooks, next %v (%v); want the third and %v", len(hs2), next, err, later)
	}
	if err := s.AckHooks(ctx, append(hs2, hs[1])); err != nil {
		t.Fatal(err)
	}
	if _, next, err = s.DueHooksNext("ent1", later, 0, nil); err != nil || !next.IsZero() {
		t.Fatalf("the retried one returned at its time: next %v (%v), want none", next, err)
	}
	if hs, next, err := s.DueHooksNext("nobody", now, 0, nil); err != nil || len(hs) != 0 || !next.IsZero() {
		t.Fatalf("an enterprise without receipts: %v %v %v", hs, next, err)
	}
}

// DueHooksWhile ends the walk at the first receipt take refuses: it is
// not returned, and next says more are due now.
func TestDueHooksWhile(t *testing.T) {
	s := newStore(t, Options{})
	ctx := context.Background()
	var ids []uint64
	for i := range 3 {
		m := msg("alice", fmt.Sprintf("137123456%02d", i), 1)
		m.Enterprise = "a"
		m.ReceiptURL = "http://127.0.0.1/x"
		m.SendAt = time.Now().Add(time.Hour)
		s.enqueue(m)
		ids = append(ids, m.ID)
		if err := s.Cancel(ctx, m.ID, "a"); err != nil {
			t.Fatal(err)
		}
	}
	now := time.Now()
	var offered []uint64
	hs, next, err := s.DueHooksWhile("a", now, 0, nil, func(h Hook) bool {
		offered = append(offered, h.Msg.ID)
		return len(offered) <= 2
	})
	if err != nil || len(hs) != 2 || hs[0].Msg.ID != ids[0] || hs[1].Msg.ID != ids[1] || !next.Equal(now) {
		t.Fatalf("took %+v, next %v (%v); want the first two, next now", hs, next, err)
	}
	if len(offered) != 3 {
		t.Fatalf("take saw %v, want all three up to the refused one", offered)
	}
	if hs, next, _ := s.DueHooksWhile("a", now, 0, nil, func(Hook) bool { return true }); len(hs) != 3 || !next.IsZero() {
		t.Fatalf("take all: %d, next %v; want 3 and none after", len(hs), next)
	}
}

// TestHookSummary: an enterprise's pending receipts are counted with
// those that failed, from the earliest due; the count stops at the limit
// and says so; another enterprise's are not counted.
func TestHookSummary(t *testing.T) {
	s := newStore(t, Options{})
	ctx := context.Background()
	before := time.Now()
	hookedMessages(t, s, "a", 5)
	hookedMessages(t, s, "b", 2)
	if sum, err := s.HookSummary("c", 10); err != nil || sum != (HookSummary{}) {
		t.Fatalf("an enterprise without receipts: %+v, %v", sum, err)
	}
	hs, err := s.DueHooks("a", time.Now(), 2, nil)
	if err != nil || len(hs) != 2 {
		t.Fatalf("due: %d, %v", len(hs), err)
	}
	if err := s.RetryHooks(ctx, hs, []time.Time{time.Now().Add(time.Hour), time.Now().Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	sum, err := s.HookSummary("a", 10)
	if err != nil || sum.Pending != 5 || sum.More || sum.Retrying != 2 || sum.FirstDue.Before(before) || sum.FirstDue.After(time.Now()) {
		t.Fatalf("summary %+v, %v; want 5 pending, 2 retrying, the first due since the test began", sum, err)
	}
	if sum, _ := s.HookSummary("a", 3); sum.Pending != 3 || !sum.More {
		t.Fatalf("limited to 3: %+v", sum)
	}
	if sum, _ := s.HookSummary("b", 10); sum.Pending != 2 || sum.Retrying != 0 {
		t.Fatalf("b: %+v", sum)
	}
}

// TestHooksDueNow: receipts waiting for a later retry are made due now,
// their attempts kept, at most limit a call; the receipts due already and
// another enterprise's are left alone; the store wakes the sender.
func TestHooksDueNow(t *testing.T) {
	var woken atomic.Int32
	s := newStore(t, Options{})
	s.SetHookCallback(func(ents []string) {
		for _, e := range ents {
			if e == "a" {
				woken.Add(1)
			}
		}
	})
	ctx := context.Background()
	for _, ent := range []string{"a", "b"} {
		hookedMessages(t, s, ent, 4)
		hs, err := s.DueHooks(ent, time.Now(), 3, nil) // three fail, one stays due
		if err != nil || len(hs) != 3 {
			t.Fatalf("%s due: %d, %v", ent, len(hs), err)
		}
		later := time.Now().Add(time.Hour)
		if err := s.RetryHooks(ctx, hs, []time.Time{later, later, later}); err != nil {
			t.Fatal(err)
		}
	}
	before := woken.Load()
	now := time.Now()
	moved, more, err := s.HooksDueNow(ctx, "a", now, 2)
	if err != nil || moved != 2 || !more {
		t.Fatalf("first call: moved %d, more %v, %v; want 2 and more", moved, more, err)
	}
	if woken.Load() == before {
		t.Error("the sender was not woken")
	}
	moved, more, err = s.HooksDueNow(ctx, "a", now, 2)
	if err != nil || moved != 1 || more {
		t.Fatalf("second call: moved %d, more %v, %v; want 1 and no more", moved, more, err)
	}
	hs, err := s.DueHooks("a", now, 0, nil)
	if err != nil || len(hs) != 4 {
		t.Fatalf("due now: %d, %v; want all 4", len(hs), err)
	}
	retried := 0
	for _, h := range hs {
		retried += h.Attempts
	}
	if retried != 3 {
		t.Errorf("attempts %d, want the 3 failures kept", retried)
	}
	if hs, _ := s.DueHooks("b", now, 0, nil); len(hs) != 1 {
		t.Errorf("b: %d due, want only its one never failed", len(hs))
	}
	if moved, more, err := s.HooksDueNow(ctx, "c", now, 10); err != nil || moved != 0 || more {
		t.Errorf("an enterprise without receipts: %d, %v, %v", moved, more, err)
	}
}

// hookedMessages stores n messages of enterprise ent with a receipt URL
// and cancels them, so that each has its receipt webhook due now.
func hookedMessages(t *testing.T, s *testStore, ent string, n int) {
	t.Helper()
	for i := range n {
		m := msg("alice", fmt.Sprintf("137123456%02d", i), 1)
		m.Enterprise = ent
		m.ReceiptURL = "http://127.0.0.1/x"
		m.SendAt = time.Now().Add(time.Hour)
		s.enqueue(m)
		if err := s.Cancel(context.Background(), m.ID, ent); err != nil {
			t.Fatal(err)
		}
	}
}
