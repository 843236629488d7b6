package reminder

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// A user, and an enterprise, keep at most their number of series: one
// more is ErrLimit naming the limit, another enterprise is not concerned,
// a series deleted makes room, and the series kept still go out.
func TestSeriesLimits(t *testing.T) {
	sim, addr := newSim(t)
	r := openRig(t, tempPath(t), addr, 0, Config{Tick: time.Hour, MaxPerUser: 3, MaxPerEnterprise: 5})
	alice, amy, bob := r.user("alice"), r.user("amy"), r.user("bob")
	later := Rule{Freq: Daily, Start: time.Now().Add(72 * time.Hour)}
	at := time.Now().Add(2 * time.Second).Truncate(time.Second)
	soon, err := r.svc.Create(alice, Spec{Text: "限额后照常提醒", Rule: Rule{Freq: Once, Start: at}})
	if err != nil {
		t.Fatal(err)
	}
	var kept []*Reminder
	for range 2 {
		rem, err := r.svc.Create(alice, Spec{Text: "每天", Rule: later})
		if err != nil {
			t.Fatal(err)
		}
		kept = append(kept, rem)
	}
	_, err = r.svc.Create(alice, Spec{Text: "第四个", Rule: later})
	if !errors.Is(err, ErrLimit) || !strings.Contains(err.Error(), "alice has 3 reminders, at most 3 a user") {
		t.Fatalf("alice's fourth: %v, want ErrLimit at 3 a user", err)
	}

	// amy has none of her own; the enterprise's fifth is her second.
	toOther := Spec{Text: "管理员的", To: []string{numOther}, Rule: later}
	for range 2 {
		if _, err := r.svc.Create(amy, toOther); err != nil {
			t.Fatal(err)
		}
	}
	_, err = r.svc.Create(amy, toOther)
	if !errors.Is(err, ErrLimit) || !strings.Contains(err.Error(), "enterprise A has 5 reminders, at most 5 an enterprise") {
		t.Fatalf("A's sixth: %v, want ErrLimit at 5 an enterprise", err)
	}
	if _, err := r.svc.Create(bob, Spec{Text: "乙的", Rule: later}); err != nil {
		t.Fatalf("B, beside A at its limit: %v", err)
	}
	if l, err := r.svc.List(Viewer{Enterprise: "A"}); err != nil || len(l) != 5 {
		t.Fatalf("A keeps %d series (%v), want 5: the refused ones are not stored", len(l), err)
	}

	// Room again once alice deletes one.
	if err := r.svc.Delete(context.Background(), Viewer{Enterprise: "A", Account: "alice"}, kept[0].ID); err != nil {
		t.Fatal(err)
	}
	if _, err := r.svc.Create(alice, Spec{Text: "删了一个再加", Rule: later}); err != nil {
		t.Fatalf("after a delete: %v", err)
	}

	// The series made before the refusals goes out at its time.
	stop := r.run()
	defer stop()
	got := waitReceived(t, sim, "限额后照常提醒", 1, 15*time.Second)
	if got[0].Dest != numAlice {
		t.Errorf("sent to %s, want alice's mobile", got[0].Dest)
	}
	if _, err := r.svc.Get(Viewer{Enterprise: "A"}, soon.ID); err != nil {
		t.Fatal(err)
	}
}

// A series keeps at most MaxExceptions changed or deleted occurrences:
// one more change or deletion is ErrLimit and changes nothing; changing
// one already changed again is no more.
func TestExceptionsBounded(t *testing.T) {
	_, addr := newSim(t)
	r := openRig(t, tempPath(t), addr, 0, Config{Tick: time.Hour})
	ctx := context.Background()
	a := Viewer{Enterprise: "A", Account: "alice"}
	start := time.Now().Add(48 * time.Hour)
	rem, err := r.svc.Create(r.user("alice"), Spec{Text: "每天", Rule: Rule{Freq: Daily, Start: start}})
	if err != nil {
		t.Fatal(err)
	}
	date := func(i int) string { return start.AddDate(0, 0, i).In(Shanghai).Format(Date) }
	for i := range MaxExceptions {
		e := OccurrenceEdit{Text: fmt.Sprintf("第%d天", i)}
		if err := r.svc.EditOccurrence(ctx, a, rem.ID, date(i), e); err != nil {
			t.Fatalf("change %d: %v", i, err)
		}
	}
	over := date(MaxExceptions)
	err = r.svc.EditOccurrence(ctx, a, rem.ID, over, OccurrenceEdit{Text: "多一个"})
	if !errors.Is(err, ErrLimit) || !strings.Contains(err.Error(), fmt.Sprintf("at most %d", MaxExceptions)) {
		t.Fatalf("change %d: %v, want ErrLimit", MaxExceptions+1, err)
	}
	if err := r.svc.DeleteOccurrence(ctx, a, rem.ID, over); !errors.Is(err, ErrLimit) {
		t.Fatalf("deletion past the limit: %v, want ErrLimit", err)
	}
	if err := r.svc.EditOccurrence(ctx, a, rem.ID, date(0), OccurrenceEdit{Text: "第0天（改）"}); err != nil {
		t.Fatalf("changing a changed one again: %v", err)
	}
	got, err := r.svc.Get(a, rem.ID)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := got.Exceptions[over]; ok || len(got.Exceptions) != MaxExceptions || got.Exceptions[date(0)].Text != "第0天（改）" {
		t.Errorf("%d exceptions, %s among them: %v; first %+v", len(got.Exceptions), over, ok, got.Exceptions[date(0)])
	}
}

// What reads every series reads little of each: the scheduler's pass
// the heads of those not due, the week listing all but the recipients.
// A hundred series at the limits (a 495-character text, a thousand
// numbers) cost either a fraction of what they hold, and the due one
// among them is still made.
func TestSeriesReadsBounded(t *testing.T) {
	_, addr := newSim(t)
	r := openRig(t, tempPath(t), addr, 0, Config{Tick: time.Hour})
	alice := r.user("alice")
	text := strings.Repeat("提", 495) // 500 with 【甲公司】
	to := make([]string, 1000)
	for i := range to {
		to[i] = fmt.Sprintf("139%08d", i)
	}
	later := Rule{Freq: Daily, Start: time.Now().Add(72 * time.Hour)}
	for range DefaultMaxPerUser - 1 {
		if _, err := r.svc.Create(alice, Spec{Text: text, To: to, Rule: later}); err != nil {
			t.Fatal(err)
		}
	}
	due, err := r.svc.Create(alice, Spec{Text: "一小时后", Rule: Rule{Freq: Once, Start: time.Now().Add(time.Hour)}})
	if err != nil {
		t.Fatal(err)
	}
	var stored uint64
	if err := r.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketSeries).ForEach(func(_, v []byte) error { stored += uint64(len(v)); return nil })
	}); err != nil {
		t.Fatal(err)
	}
	allocated := func(fn func()) uint64 {
		runtime.GC()
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		fn()
		runtime.ReadMemStats(&after)
		return after.TotalAlloc - before.TotalAlloc
	}

	// Decoding every series whole allocates over three times what they
	// hold (each number a string): a pass 5.5 MB over 1.6 MB; by the
	// heads, with the due one's send, 0.27 MB.
	pass := allocated(func() {
		if err := r.svc.Materialise(context.Background()); err != nil {
			t.Fatal(err)
		}
	})
	if pass > stored/2 {
		t.Errorf("a pass allocated %d bytes over %d stored: it decodes what it does not need", pass, stored)
	}
	got, err := r.svc.Get(Viewer{Enterprise: "A"}, due.ID)
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Occ) != 1 {
		t.Fatalf("the due series after the pass: %+v, want its occurrence made", got.Occ)
	}
	// The listing: 6 MB whole, 0.96 MB without the numbers.
	var listed []Listed
	week := allocated(func() {
		if listed, err = r.svc.Week(Viewer{Enterprise: "A"}, WeekOf(later.Start)); err != nil {
			t.Fatal(err)
		}
	})
	t.Logf("%d bytes stored; a pass allocated %d, a week's listing %d", stored, pass, week)
	if week > stored {
		t.Errorf("a week's listing allocated %d bytes over %d stored: it decodes the recipients", week, stored)
	}
	n := 0
	for _, l := range listed {
		if l.Text == text {
			n++
		}
	}
	if n < DefaultMaxPerUser-1 {
		t.Errorf("the week lists %d occurrences with the series' text, want one of each at least", n)
	}
}

// An occurrence refused for many recipients keeps the first maxReasons
// reasons and how many more: its record is kept 400 days.
func TestRefusedReasonsBounded(t *testing.T) {
	_, addr := newSim(t)
	r := openRig(t, tempPath(t), addr, 0, Config{Tick: time.Hour})
	to := make([]string, maxReasons+3)
	for i := range to {
		to[i] = fmt.Sprintf("1350000%04d", i) // not on A's whitelist
	}
	rem, err := r.svc.Create(r.user("alice"), Spec{Text: "给很多人", To: to, Rule: Rule{Freq: Once, Start: time.Now().Add(time.Hour)}})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.svc.Materialise(context.Background()); err != nil {
		t.Fatal(err)
	}
	got, err := r.svc.Get(Viewer{Enterprise: "A"}, rem.ID)
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Occ) != 1 {
		t.Fatalf("occurrences %+v", got.Occ)
	}
	for _, st := range got.Occ {
		if st.State != StateRefused || strings.Count(st.Reason, "not on the whitelist") != maxReasons || !strings.HasSuffix(st.Reason, "; and 3 more refused") {
			t.Errorf("record %+v: want refused naming %d numbers and 3 more", st, maxReasons)
		}
	}
}
