package gateway

import (
	"slices"
	"testing"
	"time"

	"github.com/qxtd/qxtd/queue"
)

// testDispatcher is a dispatcher with capacity slots, at most entMax per
// enterprise while others wait, and no scan pending.
func testDispatcher(capacity, entMax int) *dispatcher {
	return &dispatcher{
		g:    &Gateway{byName: map[string]*upstream{}},
		full: make(map[string]bool),
		wake: make(chan struct{}, 1), free: make(chan struct{}, 1),
		capacity: capacity, entMax: entMax, hand: newHandOver[queue.Job](dueHandedMax(capacity)),
		urgent: newHandOver[queue.Job](dueHandedMax(capacity)), perUrgent: make(map[string]int),
		inflight: make(map[queue.Key]flight), perEnt: make(map[string]int), perUp: make(map[string]int),
	}
}

// Parts sent with priority go in a lane of their own: taken while a scan
// is pending (ahead of the backlog in the store), each enterprise at most
// urgentMax in flight through it, never one a scan saw (it took it, or
// will: sent twice otherwise), and the lane's count freed as they end.
func TestDispatcherPriorityLane(t *testing.T) {
	d := testDispatcher(16, 8) // urgentMax 2
	d.rescan = true            // a backlog waits in the store
	urgent := func(id uint64, ent string) queue.Job {
		j := job(id, ent)
		j.Msg.Priority = true
		return j
	}
	d.scanned = 5
	d.offer([]queue.Job{job(1, "a"), urgent(2, "a"), urgent(3, "a"), urgent(4, "a"), urgent(5, "b")}, 6)
	d.offer([]queue.Job{urgent(6, "a")}, 5) // a scan saw its commit
	d.pull()
	got := d.takeUrgent(16)
	if !slices.Equal(ids(got), []uint64{2, 3, 5}) {
		t.Fatalf("taken %v, want [2 3 5]: a's two of urgentMax, b's one; 1 is ordinary, 6 was seen", ids(got))
	}
	if len(d.urgents) != 1 || d.urgents[0].v.Key.ID != 4 {
		t.Fatalf("waiting in the lane: %v, want 4", d.urgents)
	}
	if again := d.takeUrgent(16); len(again) != 0 {
		t.Fatalf("a at its lane's bound: took %v", ids(again))
	}
	d.done(queue.Key{ID: 2})
	if got := d.takeUrgent(16); !slices.Equal(ids(got), []uint64{4}) {
		t.Fatalf("after one of a's ended: took %v, want [4]", ids(got))
	}
	if d.perUrgent["a"] != 2 || d.perUrgent["b"] != 1 || d.perEnt["a"] != 2 {
		t.Errorf("lane counts %v, enterprise counts %v", d.perUrgent, d.perEnt)
	}
	// No room: they wait.
	full := testDispatcher(1, 1)
	full.take(job(9, "c"))
	full.offer([]queue.Job{urgent(10, "c")}, 1)
	full.pull()
	if got := full.takeUrgent(full.capacity - len(full.inflight)); len(got) != 0 || len(full.urgents) != 1 {
		t.Errorf("no free slot: took %v, %d waiting", ids(got), len(full.urgents))
	}
}

func (d *dispatcher) testShare(ent string) int { return d.entMax - d.perEnt[ent] }

func job(id uint64, ent string) queue.Job {
	return queue.Job{Key: queue.Key{ID: id}, Msg: &queue.Message{ID: id, Enterprise: ent, Upstream: "up"}}
}

func ids(jobs []queue.Job) []uint64 {
	var out []uint64
	for _, j := range jobs {
		out = append(out, j.Key.ID)
	}
	return out
}

// A part the store handed over goes out once: not if a scan that saw its
// commit came first (that scan took it, or found it in flight), not twice
// if handed over while in flight.
func TestDispatcherHandOverOnce(t *testing.T) {
	d := testDispatcher(10, 10)
	d.scanned = 5
	d.offer([]queue.Job{job(1, "e")}, 5) // stored at or before the scan: it saw it
	d.pull()
	if got := d.takeHanded(10, d.testShare); len(got) != 0 {
		t.Fatalf("a part the last scan saw was taken: %v", ids(got))
	}
	d.offer([]queue.Job{job(2, "e"), job(3, "e")}, 6)
	d.take(job(3, "e")) // a scan took it meanwhile
	d.scanned = 7
	d.offer([]queue.Job{job(4, "e")}, 8)
	d.pull()
	got := d.takeHanded(10, d.testShare)
	if !slices.Equal(ids(got), []uint64{4}) {
		t.Errorf("taken %v, want [4] (2 and 3 were seen by the scan at 7)", ids(got))
	}
	if len(d.handed) != 0 || len(d.inflight) != 2 {
		t.Errorf("left %d handed, %d in flight", len(d.handed), len(d.inflight))
	}
	if again := d.takeHanded(10, d.testShare); len(again) != 0 {
		t.Errorf("taken twice: %v", ids(again))
	}
}

// A scan looks at the parts due by the clock it read before its read
// transaction began: a part committed in between (its snapshot at or
// below the scan's) but due after that clock was not looked at, and is
// taken from the hand-over, not dropped.
func TestDispatcherHandOverDueAfterScanClock(t *testing.T) {
	d := testDispatcher(10, 10)
	t0 := time.Now()
	d.scanned, d.dueUntil = 5, t0
	before, after := job(1, "e"), job(2, "e")
	before.Part.DueAt, after.Part.DueAt = t0, t0.Add(time.Millisecond)
	d.offer([]queue.Job{before, after}, 5)
	d.pull()
	if got := ids(d.takeHanded(10, d.testShare)); !slices.Equal(got, []uint64{2}) {
		t.Errorf("taken %v, want [2] (1 was due by the scan's clock: it saw it)", got)
	}
}

// Handed-over parts are taken in DueShared's turns: each enterprise up to
// its share first, then the rest in order.
func TestDispatcherHandOverShares(t *testing.T) {
	offer := func(d *dispatcher) {
		d.offer([]queue.Job{job(1, "a"), job(2, "a"), job(3, "a"), job(4, "b"), job(5, "a")}, 1)
	}
	d := testDispatcher(10, 2)
	offer(d)
	d.pull()
	if got := ids(d.takeHanded(10, d.testShare)); !slices.Equal(got, []uint64{1, 2, 4, 3, 5}) {
		t.Errorf("no scan pending: taken %v, want [1 2 4 3 5]", got)
	}

	d = testDispatcher(10, 2)
	offer(d)
	d.pull()
	if got := ids(d.takeHanded(3, d.testShare)); !slices.Equal(got, []uint64{1, 2, 4}) {
		t.Errorf("room 3: taken %v, want [1 2 4]", got)
	}
	if got := ids(jobsOf(d.handed)); !slices.Equal(got, []uint64{3, 5}) {
		t.Errorf("room 3: kept %v, want [3 5]", got)
	}
}

// The hand-over queue is bounded (twice the windows); what does not fit
// is left in the store for a scan, which the overflow asks for.
func TestDispatcherHandOverBounded(t *testing.T) {
	d := testDispatcher(4, 4)
	var jobs []queue.Job
	for i := range 3 * dueHandedMax(4) {
		jobs = append(jobs, job(uint64(i+1), "e"))
	}
	d.offer(jobs, 1)
	if d.pull(); len(d.handed) != dueHandedMax(4) || !d.rescan {
		t.Errorf("handed %d (max %d), rescan %v", len(d.handed), dueHandedMax(4), d.rescan)
	}
	// Kept over their share, the handed parts and new ones stay within
	// the bound too.
	d.rescan = false
	d.offer(jobs[:3], 2)
	if d.pull(); len(d.handed) != dueHandedMax(4) || !d.rescan {
		t.Errorf("after more: handed %d (max %d), rescan %v", len(d.handed), dueHandedMax(4), d.rescan)
	}
}

func jobsOf(hs []handed[queue.Job]) []queue.Job {
	var out []queue.Job
	for _, h := range hs {
		out = append(out, h.v)
	}
	return out
}

// The parts the store handed over go to an upstream only as far as it has
// workers for them: the rest wait, in order, and go as its parts end; and
// none to an upstream with no bind up: they stay in the store (where a
// scan finds them once it is back) rather than hold the dispatcher up.
func TestDispatcherHandOverUpstreamRoom(t *testing.T) {
	d := testDispatcher(16, 16)
	for _, name := range []string{"a", "down"} {
		d.g.byName[name] = &upstream{g: d.g, cfg: UpstreamConfig{Name: name, Binds: 1, Window: 2}}
	}
	d.g.byName["a"].up.Store(1)
	on := func(id uint64, up string) queue.Job {
		j := job(id, "e")
		j.Msg.Upstream = up
		return j
	}
	d.offer([]queue.Job{on(1, "a"), on(2, "down"), on(3, "a"), on(4, "a"), on(5, "gone")}, 1)
	d.pull()
	got := d.takeHanded(16, func(string) int { return 16 })
	if !slices.Equal(ids(got), []uint64{1, 3, 5}) {
		t.Fatalf("taken %v, want [1 3 5]: a's two workers, none for down, the unconfigured one to be failed", ids(got))
	}
	if len(d.handed) != 1 || d.handed[0].v.Key.ID != 4 {
		t.Fatalf("waiting: %v, want a's third", ids(jobsOf(d.handed)))
	}
	d.done(queue.Key{ID: 1})
	if got := d.takeHanded(16, func(string) int { return 16 }); !slices.Equal(ids(got), []uint64{4}) {
		t.Fatalf("after one of a's ended: taken %v, want [4]", ids(got))
	}
	if d.perUp["down"] != 0 {
		t.Errorf("in flight to down: %d", d.perUp["down"])
	}
}
