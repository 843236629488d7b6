package reminder

import (
	"context"
	"encoding/json"
	"math"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/qxtd/qxtd/queue"
)

// testClock is a Config.Now that a test moves.
type testClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *testClock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = t
}

// openStoreOnly is a Service over a fresh file with no gateway or policy:
// its passes can mark occurrences missed but not send (a send would
// panic).
func openStoreOnly(t *testing.T, clock *testClock) (*bolt.DB, *Service) {
	t.Helper()
	db, err := queue.OpenDB(tempPath(t), queue.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	s, err := New(Config{DB: db, Now: clock.Now, Ahead: time.Minute, Grace: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	return db, s
}

// putBehind writes r into the bucket directly, as a cluster replica
// applies another node's write: the Service is not told.
func putBehind(t *testing.T, db *bolt.DB, r *Reminder) {
	t.Helper()
	v, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists(bucketSeries)
		if err != nil {
			return err
		}
		return b.Put(key(r.Enterprise, r.ID), v)
	}); err != nil {
		t.Fatal(err)
	}
}

func pass(t *testing.T, s *Service) {
	t.Helper()
	if err := s.Materialise(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// A series created, a pass, the clock moved to the first moment its
// occurrence is within Ahead: the next pass sends it (the memo's wake is
// that moment, not later), and a pass before it decodes nothing.
func TestMemoDoesNotDelayDue(t *testing.T) {
	_, addr := newSim(t)
	clock := &testClock{t: time.Now()}
	r := openRig(t, tempPath(t), addr, 0, Config{Ahead: time.Minute, Grace: time.Hour, Tick: time.Hour, Now: clock.Now})
	sendAt := clock.Now().Add(2 * time.Hour).Truncate(time.Second)
	rem, err := r.svc.Create(r.user("alice"), Spec{Text: "两小时后开会", Rule: Rule{Freq: Once, Start: sendAt}})
	if err != nil {
		t.Fatal(err)
	}
	pass(t, r.svc)
	if r.svc.decodes != 1 {
		t.Fatalf("first pass decoded %d series, want 1", r.svc.decodes)
	}
	clock.Set(sendAt.Add(-time.Minute - time.Nanosecond))
	pass(t, r.svc)
	if r.svc.decodes != 1 {
		t.Errorf("a pass before the occurrence is within Ahead decoded %d series, want none", r.svc.decodes-1)
	}
	clock.Set(sendAt.Add(-time.Minute + time.Nanosecond)) // just within Ahead
	pass(t, r.svc)
	got, err := r.svc.Get(Viewer{Enterprise: "A"}, rem.ID)
	if err != nil {
		t.Fatal(err)
	}
	st, ok := got.Occ[sendAt.In(Shanghai).Format(Date)]
	if !ok || st.State != StateScheduled || len(st.IDs) != 1 {
		t.Fatalf("after the pass at its time less Ahead: occurrences %+v, want it scheduled", got.Occ)
	}
	m, err := r.store.Get(st.IDs[0])
	if err != nil || !m.SendAt.Equal(sendAt) {
		t.Fatalf("its message %+v %v, want scheduled at %v", m, err, sendAt)
	}
}

// A series changed in the bucket behind the Service's back (its time
// moved, as another node's edit arrives through the cluster replica) is
// seen at the next pass; one deleted there leaves the memo.
func TestMemoSeesChangesBehindItsBack(t *testing.T) {
	_, addr := newSim(t)
	clock := &testClock{t: time.Now()}
	r := openRig(t, tempPath(t), addr, 0, Config{Ahead: time.Minute, Grace: time.Hour, Tick: time.Hour, Now: clock.Now})
	alice := r.user("alice")
	far := clock.Now().Add(72 * time.Hour).Truncate(time.Second)
	moved, err := r.svc.Create(alice, Spec{Text: "改了时间", Rule: Rule{Freq: Once, Start: far}})
	if err != nil {
		t.Fatal(err)
	}
	gone, err := r.svc.Create(alice, Spec{Text: "被删了", Rule: Rule{Freq: Once, Start: far}})
	if err != nil {
		t.Fatal(err)
	}
	pass(t, r.svc)
	if r.svc.decodes != 2 || len(r.svc.memo) != 2 {
		t.Fatalf("first pass: %d decoded, %d remembered; want 2, 2", r.svc.decodes, len(r.svc.memo))
	}

	// Another node moves the first to 30 s from now and deletes the other.
	soon := clock.Now().Add(30 * time.Second).Truncate(time.Second)
	cur, err := r.svc.Get(Viewer{Enterprise: "A"}, moved.ID)
	if err != nil {
		t.Fatal(err)
	}
	cur.Rule.Start = soon
	putBehind(t, r.db, cur)
	if err := r.db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketSeries).Delete(key("A", gone.ID))
	}); err != nil {
		t.Fatal(err)
	}

	pass(t, r.svc)
	if r.svc.decodes != 3 {
		t.Errorf("second pass decoded %d series, want the changed one", r.svc.decodes-2)
	}
	got, err := r.svc.Get(Viewer{Enterprise: "A"}, moved.ID)
	if err != nil {
		t.Fatal(err)
	}
	if st, ok := got.Occ[soon.In(Shanghai).Format(Date)]; !ok || st.State != StateScheduled || !st.SendAt.Equal(soon) {
		t.Errorf("the series moved behind the Service's back: occurrences %+v, want one scheduled at %v", got.Occ, soon)
	}
	if _, ok := r.svc.memo[string(key("A", gone.ID))]; ok || len(r.svc.memo) != 1 {
		t.Errorf("the deleted series is still remembered (%d entries)", len(r.svc.memo))
	}
}

// A finished series (its one occurrence done, or every one of its count)
// is decoded once: later passes, days and a year later, skip it. A clock
// set back before the memo was made decodes it again: an occurrence older
// than occKeep then is within it again, and the pass does what it did
// before the memo (marks it missed).
func TestMemoFinishedNotDecodedAgain(t *testing.T) {
	t0 := time.Date(2026, 3, 10, 10, 0, 0, 0, Shanghai)
	clock := &testClock{t: t0}
	db, s := openStoreOnly(t, clock)
	once := &Reminder{ID: 1, Enterprise: "A", Account: "alice", Text: "x", From: t0.AddDate(0, 0, -40),
		Rule: Rule{Freq: Once, Start: t0.AddDate(0, 0, -30)}}
	once.Occ = map[string]OccState{once.Rule.Start.Format(Date): {State: StateScheduled, SendAt: once.Rule.Start, IDs: []uint64{7}}}
	count := &Reminder{ID: 2, Enterprise: "A", Account: "alice", Text: "y", From: t0.AddDate(0, 0, -100),
		Rule: Rule{Freq: Daily, Start: t0.AddDate(0, 0, -90), Count: 3}}
	count.Occ = map[string]OccState{}
	for _, o := range count.Rule.Between(count.From, t0) {
		count.Occ[o.Date] = OccState{State: StateMissed, SendAt: o.SendAt}
	}
	// Its occurrence is 401 days old at t0: older than occKeep, left alone.
	old := &Reminder{ID: 3, Enterprise: "A", Account: "alice", Text: "z", From: t0.AddDate(0, 0, -402),
		Rule: Rule{Freq: Once, Start: t0.AddDate(0, 0, -401)}}
	for _, r := range []*Reminder{once, count, old} {
		putBehind(t, db, r)
	}
	pass(t, s)
	if s.decodes != 3 {
		t.Fatalf("first pass decoded %d, want 3", s.decodes)
	}
	for _, later := range []time.Duration{0, time.Minute, 25 * time.Hour, 400 * 24 * time.Hour} {
		clock.Set(t0.Add(later))
		pass(t, s)
		if s.decodes != 3 {
			t.Fatalf("a pass %v later decoded %d finished series, want none", later, s.decodes-3)
		}
	}

	clock.Set(t0.Add(-48 * time.Hour)) // the third's occurrence is 399 days old
	pass(t, s)
	if s.decodes != 6 {
		t.Errorf("a pass with the clock set back decoded %d series, want all 3 again", s.decodes-3)
	}
	var got *Reminder
	if err := db.View(func(tx *bolt.Tx) error {
		var err error
		got, err = getTx(tx, "A", old.ID)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if st := got.Occ[old.Rule.Start.Format(Date)]; st.State != StateMissed {
		t.Errorf("with the clock set back the old occurrence is %+v, want marked missed as without the memo", got.Occ)
	}
}

// TestWakeNeverLate: for series of every kind (each frequency, count and
// until, Before, exceptions moving occurrences up to maxMove either way or
// deleting them, occurrences done, From, in Asia/Shanghai including its
// summer-time years 1986–1991), the memo's wake taken at seen is never
// after a moment at which due finds something: for every later now, due
// is empty before wake. It is also tight: just after wake, due finds the
// occurrence (the memo does not decode what it need not).
func TestWakeNeverLate(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	day := 24 * time.Hour
	dur := func(lo, hi time.Duration) time.Duration { return lo + time.Duration(rng.Int64N(int64(hi-lo))) }
	years := []int{1988, 1991, 2026, 2027}
	for i := range 3000 {
		seen := time.Date(years[rng.IntN(len(years))], time.Month(1+rng.IntN(12)), 1+rng.IntN(28), rng.IntN(24), rng.IntN(60), rng.IntN(60), rng.IntN(1e9), Shanghai)
		ahead := []time.Duration{time.Minute, time.Hour, 24 * time.Hour, 72 * time.Hour}[rng.IntN(4)]
		s := &Service{cfg: Config{Ahead: ahead}}
		r := &Reminder{ID: uint64(i), Enterprise: "A"}
		ru := &r.Rule
		ru.Freq = []Freq{Once, Daily, Workdays, Weekly, Monthly}[rng.IntN(5)]
		ru.Start = seen.Add(dur(-450*day, 40*day)).Truncate(time.Minute).Add(time.Duration(rng.IntN(3)) * time.Second)
		if rng.IntN(3) == 0 {
			ru.Before = rng.IntN(MaxBefore + 1)
		} else {
			ru.Before = rng.IntN(120)
		}
		switch ru.Freq {
		case Weekly:
			for _, d := range rng.Perm(7)[:1+rng.IntN(7)] {
				ru.Weekdays = append(ru.Weekdays, time.Weekday(d))
			}
		case Monthly:
			ru.MonthDay = rng.IntN(32)
		}
		if ru.Freq != Once {
			switch rng.IntN(3) {
			case 0:
				ru.Count = 1 + rng.IntN(60)
			case 1:
				ru.Until = ru.Start.In(Shanghai).Add(dur(0, 500*day)).Format(Date)
			}
		}
		r.From = ru.Start.Add(dur(-30*day, 30*day))
		occs := ru.Between(seen.Add(-450*day), seen.Add(60*day))
		r.Exceptions, r.Occ = map[string]Exception{}, map[string]OccState{}
		for _, o := range occs {
			switch rng.IntN(12) {
			case 0:
				r.Exceptions[o.Date] = Exception{Deleted: true}
			case 1:
				r.Exceptions[o.Date] = Exception{At: o.At.Add(dur(-maxMove, maxMove+1))}
			}
			if o.SendAt.Before(seen.Add(dur(-10*day, 10*day))) && rng.IntN(4) != 0 {
				r.Occ[o.Date] = OccState{State: StateScheduled, SendAt: o.SendAt}
			}
		}
		isDue := len(s.due(r, seen)) > 0
		wake := s.wakeAt(r, seen, isDue)
		// Probes: each occurrence's first moment within Ahead and its
		// neighbours, around wake, and later moments at random.
		probes := []time.Time{seen, seen.Add(time.Nanosecond)}
		for _, o := range occs {
			o = r.effective(o)
			for _, d := range []time.Duration{-time.Nanosecond, 0, time.Nanosecond} {
				probes = append(probes, o.SendAt.Add(-ahead+d))
			}
		}
		if wake != math.MaxInt64 {
			w := time.Unix(0, wake)
			probes = append(probes, w.Add(-time.Nanosecond), w, w.Add(time.Nanosecond))
		}
		for range 20 {
			probes = append(probes, seen.Add(dur(0, 500*day)))
		}
		for _, now := range probes {
			if now.Before(seen) || unixNano(now) >= wake {
				continue
			}
			if d := s.due(r, now); len(d) > 0 {
				t.Fatalf("series %d %+v (exceptions %v, done %d, from %v, ahead %v): memo taken at %v wakes at %v, but at %v %s is due",
					i, r.Rule, r.Exceptions, len(r.Occ), r.From, ahead, seen, time.Unix(0, wake).In(Shanghai), now, d[0].Date)
			}
		}
		if wake != math.MaxInt64 && wake > unixNano(seen) {
			if w := time.Unix(0, wake).Add(time.Nanosecond); len(s.due(r, w)) == 0 {
				t.Errorf("series %d %+v (exceptions %v): memo wakes at %v, but nothing is due just after", i, r.Rule, r.Exceptions, w.In(Shanghai))
			}
		}
	}
}

// When Run ends (the node stops leading the cluster's reminders, or shuts
// down), the memo goes with it.
func TestMemoDroppedWhenRunEnds(t *testing.T) {
	t0 := time.Date(2026, 3, 10, 10, 0, 0, 0, Shanghai)
	db, s := openStoreOnly(t, &testClock{t: t0})
	putBehind(t, db, &Reminder{ID: 1, Enterprise: "A", Account: "alice", Text: "x", From: t0, Rule: Rule{Freq: Daily, Start: t0.Add(72 * time.Hour)}})
	pass(t, s)
	if len(s.memo) != 1 {
		t.Fatalf("%d remembered after a pass, want 1", len(s.memo))
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); s.Run(ctx) }()
	cancel()
	<-done
	if len(s.memo) != 0 {
		t.Errorf("%d remembered after Run returned, want none", len(s.memo))
	}
}
