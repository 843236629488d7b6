package reminder

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/qxtd/qxtd/queue"
)

func TestOccurrenceArrivesAtItsTime(t *testing.T) {
	sim, addr := newSim(t)
	r := openRig(t, tempPath(t), addr, 0, Config{Tick: time.Hour})
	stop := r.run()
	defer stop()

	at := time.Now().Add(2 * time.Second).Truncate(time.Second)
	rem, err := r.svc.Create(r.user("alice"), Spec{Text: "开会提醒 3楼", Rule: Rule{Freq: Once, Start: at}})
	if err != nil {
		t.Fatal(err)
	}
	got := waitReceived(t, sim, "开会提醒 3楼", 1, 15*time.Second)
	if now := time.Now(); now.Before(at) {
		t.Errorf("arrived at %v, before its time %v", now, at)
	}
	if got[0].Dest != numAlice {
		t.Errorf("sent to %s, want the owner's mobile %s", got[0].Dest, numAlice)
	}
	if s := decodeUCS2(got[0].ShortMessage); s != "【甲公司】开会提醒 3楼" {
		t.Errorf("text on the air %q: the enterprise signature applies", s)
	}
	l, err := r.svc.Week(Viewer{Enterprise: "A", Account: "alice"}, WeekOf(at))
	if err != nil {
		t.Fatal(err)
	}
	if len(l) != 1 || l[0].State != StateScheduled || len(l[0].MessageIDs) != 1 || l[0].Reminder != rem.ID {
		t.Fatalf("week listing %+v", l)
	}
	m, err := r.store.Get(l[0].MessageIDs[0])
	if err != nil || m.Account != "alice" || !m.SendAt.Equal(at) {
		t.Fatalf("the occurrence's message: %+v %v (want sent by alice, scheduled at %v)", m, err, at)
	}
	// Another enterprise, and another user of the same one, see nothing.
	for _, v := range []Viewer{{Enterprise: "B"}, {Enterprise: "B", Account: "bob"}, {Enterprise: "A", Account: "amy"}} {
		if _, err := r.svc.Get(v, rem.ID); !errors.Is(err, ErrNotFound) {
			t.Errorf("%+v: Get = %v, want ErrNotFound", v, err)
		}
		if err := r.svc.Delete(context.Background(), v, rem.ID); !errors.Is(err, ErrNotFound) {
			t.Errorf("%+v: Delete = %v, want ErrNotFound", v, err)
		}
		if l, _ := r.svc.Week(v, WeekOf(at)); len(l) != 0 {
			t.Errorf("%+v: lists %+v", v, l)
		}
	}
	if _, err := r.svc.Get(Viewer{Enterprise: "A"}, rem.ID); err != nil {
		t.Errorf("the enterprise admin: %v", err)
	}
}

// A reminder is stored, the daemon stops before its occurrences are due
// and starts again later: the occurrence within the grace period goes at
// once, exactly once (also after another restart), the older one is
// marked missed.
func TestRestartGraceAndMissed(t *testing.T) {
	sim, addr := newSim(t)
	path := tempPath(t)
	cfg := Config{Grace: time.Hour, Ahead: time.Minute, Tick: time.Hour}
	now := time.Now()

	r := openRig(t, path, addr, 0, cfg)
	alice := r.user("alice")
	old, err := r.svc.Create(alice, Spec{Text: "早的提醒", Rule: Rule{Freq: Once, Start: now.Add(time.Hour)}})
	if err != nil {
		t.Fatal(err)
	}
	late, err := r.svc.Create(alice, Spec{Text: "晚的提醒", To: []string{numOther}, Rule: Rule{Freq: Once, Start: now.Add(3 * time.Hour)}})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.svc.Materialise(context.Background()); err != nil {
		t.Fatal(err)
	}
	r.stop()

	// Started again three and a half hours later: "late" is 30 minutes
	// late (within the hour of grace), "old" two and a half hours.
	skew := 3*time.Hour + 30*time.Minute
	r = openRig(t, path, addr, skew, cfg)
	stop := r.run()
	got := waitReceived(t, sim, "晚的提醒", 1, 15*time.Second)
	stop()
	if got[0].Dest != numOther {
		t.Errorf("sent to %s, want %s", got[0].Dest, numOther)
	}
	state := func(r *rig, id uint64) OccState {
		t.Helper()
		rem, err := r.svc.Get(Viewer{Enterprise: "A"}, id)
		if err != nil {
			t.Fatal(err)
		}
		if len(rem.Occ) != 1 {
			t.Fatalf("reminder %d: occurrences %+v", id, rem.Occ)
		}
		for _, st := range rem.Occ {
			return st
		}
		return OccState{}
	}
	if st := state(r, old.ID); st.State != StateMissed || len(st.IDs) != 0 {
		t.Errorf("the occurrence past the grace period: %+v, want missed", st)
	}
	sent := state(r, late.ID)
	if sent.State != StateScheduled || len(sent.IDs) != 1 {
		t.Fatalf("the occurrence within the grace period: %+v, want scheduled with one message", sent)
	}
	// The listing shows both, the missed one as missed.
	l, err := r.svc.Week(Viewer{Enterprise: "A", Account: "alice"}, WeekOf(now.Add(time.Hour)))
	if err != nil {
		t.Fatal(err)
	}
	states := map[uint64]string{}
	for _, o := range l {
		states[o.Reminder] = o.State
	}
	if wk := WeekOf(now.Add(time.Hour)); wk == WeekOf(now.Add(3*time.Hour)) && (states[old.ID] != StateMissed || states[late.ID] != StateScheduled) {
		t.Errorf("listing %+v", l)
	}
	r.stop()

	// Once more: nothing is sent again.
	r = openRig(t, path, addr, skew, cfg)
	if err := r.svc.Materialise(context.Background()); err != nil {
		t.Fatal(err)
	}
	if st := state(r, late.ID); st.State != StateScheduled || len(st.IDs) != 1 || st.IDs[0] != sent.IDs[0] {
		t.Errorf("after another restart: %+v, want %+v", st, sent)
	}
	msgs, _, err := r.store.List(queue.ListFilter{Enterprise: "A"}, 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	if len(msgs) != 1 {
		t.Errorf("%d messages in the store, want the one occurrence sent once", len(msgs))
	}
}

// Changing or deleting an occurrence, or the series, cancels the message
// already scheduled for it and makes the new one.
func TestEditsCancelScheduledMessages(t *testing.T) {
	_, addr := newSim(t)
	r := openRig(t, tempPath(t), addr, 0, Config{Tick: time.Hour})
	ctx := context.Background()
	start := time.Now().Add(time.Hour)
	rem, err := r.svc.Create(r.user("alice"), Spec{Text: "每天提醒", Rule: Rule{Freq: Daily, Start: start, Count: 3}})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.svc.Materialise(ctx); err != nil {
		t.Fatal(err)
	}
	a := Viewer{Enterprise: "A", Account: "alice"}
	get := func() *Reminder {
		rem, err := r.svc.Get(a, rem.ID)
		if err != nil {
			t.Fatal(err)
		}
		return rem
	}
	first := start.In(Shanghai).Format(Date)
	st, ok := get().Occ[first]
	if !ok || st.State != StateScheduled || len(get().Occ) != 1 {
		t.Fatalf("occurrences %+v: want the first (within 24 h) scheduled", get().Occ)
	}
	cancelled := func(id uint64) {
		t.Helper()
		m, err := r.store.Get(id)
		if err != nil || m.Parts[0].State != queue.StateCancelled {
			t.Errorf("message %d: %+v %v, want cancelled", id, m, err)
		}
	}

	// One occurrence's text: its message is replaced.
	if err := r.svc.EditOccurrence(ctx, a, rem.ID, first, OccurrenceEdit{Text: "改过的提醒"}); err != nil {
		t.Fatal(err)
	}
	cancelled(st.IDs[0])
	if err := r.svc.Materialise(ctx); err != nil {
		t.Fatal(err)
	}
	st2 := get().Occ[first]
	m, err := r.store.Get(st2.IDs[0])
	if err != nil || m.Text != "【甲公司】改过的提醒" || m.Parts[0].State != queue.StateAccepted {
		t.Fatalf("the replacement: %+v %v", m, err)
	}

	// Deleted: cancelled, not made again, not listed.
	if err := r.svc.DeleteOccurrence(ctx, a, rem.ID, first); err != nil {
		t.Fatal(err)
	}
	cancelled(st2.IDs[0])
	if err := r.svc.Materialise(ctx); err != nil {
		t.Fatal(err)
	}
	if occ := get().Occ; len(occ) != 0 {
		t.Errorf("a deleted occurrence was made again: %+v", occ)
	}
	l, _ := r.svc.Week(a, WeekOf(start))
	for _, o := range l {
		if o.Date == first {
			t.Errorf("deleted occurrence listed: %+v", o)
		}
	}
	if err := r.svc.DeleteOccurrence(ctx, a, rem.ID, first); !errors.Is(err, ErrNotFound) {
		t.Errorf("deleting it again: %v, want ErrNotFound", err)
	}
	if err := r.svc.DeleteOccurrence(ctx, a, rem.ID, "2020-01-01"); !errors.Is(err, ErrNotFound) {
		t.Errorf("a day without an occurrence: %v, want ErrNotFound", err)
	}

	// Moved into the window: the second occurrence is made; deleting the
	// series cancels it.
	second := start.AddDate(0, 0, 1).In(Shanghai).Format(Date)
	if err := r.svc.EditOccurrence(ctx, a, rem.ID, second, OccurrenceEdit{At: start.Add(time.Minute)}); err != nil {
		t.Fatal(err)
	}
	if err := r.svc.Materialise(ctx); err != nil {
		t.Fatal(err)
	}
	st3, ok := get().Occ[second]
	if !ok || st3.State != StateScheduled || !st3.SendAt.Equal(start.Add(time.Minute)) {
		t.Fatalf("the moved occurrence: %+v", get().Occ)
	}
	if err := r.svc.Delete(ctx, a, rem.ID); err != nil {
		t.Fatal(err)
	}
	cancelled(st3.IDs[0])
	if _, err := r.svc.Get(a, rem.ID); !errors.Is(err, ErrNotFound) {
		t.Errorf("after Delete: %v", err)
	}
}

// TestSeriesOlderThanItsRecords: a daily series runs past occKeep (400
// days), whose records are pruned. The scheduler must not take the pruned
// occurrences for undone ones: it would mark them missed again at every
// pass, a write and a warning each, pruned again by that very write.
func TestSeriesOlderThanItsRecords(t *testing.T) {
	_, addr := newSim(t)
	path := tempPath(t)
	var logs syncBuffer
	cfg := Config{Grace: time.Hour, Ahead: time.Minute, Tick: time.Hour, Logger: slog.New(slog.NewTextHandler(&logs, nil))}
	r := openRig(t, path, addr, 0, cfg)
	rem, err := r.svc.Create(r.user("alice"), Spec{Text: "每日", Rule: Rule{Freq: Daily, Start: time.Now().Add(time.Hour)}})
	if err != nil {
		t.Fatal(err)
	}
	r.stop()

	// Started again 402 days later: the days it was down are missed
	// (those within occKeep recorded as such), once.
	r = openRig(t, path, addr, 402*24*time.Hour, cfg)
	if err := r.svc.Materialise(context.Background()); err != nil {
		t.Fatal(err)
	}
	missed := strings.Count(logs.String(), "occurrence missed")
	if missed < 395 || missed > 402 {
		t.Errorf("first pass: %d occurrences missed, want those of the last 400 days", missed)
	}
	stored := func() string {
		t.Helper()
		var v string
		if err := r.db.View(func(tx *bolt.Tx) error {
			v = string(tx.Bucket(bucketSeries).Get(key("A", rem.ID)))
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		return v
	}
	was := stored()
	if err := r.svc.Materialise(context.Background()); err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(logs.String(), "occurrence missed") - missed; n != 0 || stored() != was {
		t.Errorf("second pass: %d occurrences missed again, series rewritten %v; want none", n, stored() != was)
	}

	// The listing of those weeks: the days within occKeep missed, the
	// older ones not listed (not "pending": what became of them is gone).
	now := time.Now().Add(402 * 24 * time.Hour)
	listed := 0
	for d := 0; d < 21; d += 7 {
		l, err := r.svc.Week(Viewer{Enterprise: "A", Account: "alice"}, WeekOf(rem.Rule.Start.Add(time.Duration(d)*24*time.Hour)))
		if err != nil {
			t.Fatal(err)
		}
		for _, o := range l {
			listed++
			if o.State != StateMissed || o.SendAt.Before(now.Add(-occKeep-time.Minute)) {
				t.Errorf("listed %s: %s, send time %v; want missed, within %v", o.Date, o.State, o.SendAt, occKeep)
			}
		}
	}
	// Those within occKeep are the days from the third on (the series
	// starts an hour from the first start, the second start is 402 days
	// later): how many of them the three weeks hold depends on the
	// weekday the series started on (a Sunday start leaves its first week
	// one day, which is too old).
	weeks := map[Week]bool{}
	for d := 0; d < 21; d += 7 {
		weeks[WeekOf(rem.Rule.Start.Add(time.Duration(d)*24*time.Hour))] = true
	}
	want := 0
	for d := 2; d < 28; d++ {
		if weeks[WeekOf(rem.Rule.Start.Add(time.Duration(d)*24*time.Hour))] {
			want++
		}
	}
	if listed != want {
		t.Errorf("the first three weeks list %d occurrences, want the %d within %v", listed, want, occKeep)
	}
}

// syncBuffer is a bytes.Buffer that a logger may write from any goroutine.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (w *syncBuffer) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

func (w *syncBuffer) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.String()
}
