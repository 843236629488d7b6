package gateway_test

import (
	"context"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/fiorix/go-smpp/smpp/pdu/pdufield"

	"github.com/qxtd/qxtd/gateway"
	"github.com/qxtd/qxtd/queue"
	"github.com/qxtd/qxtd/smpp"
)

// Messages sent with priority that reach the dispatcher from the store,
// not from the commit that accepted them: a split message joined after a
// restart, a retry, a scheduled send. Each goes out ahead of the backlog
// of ordinary messages its enterprise queued before it.

// The upstream of these tests: one bind with a window of 10 (10 workers,
// one part with priority in flight an enterprise) at tps submit_sm a
// second, so that a backlog of a few hundred takes seconds to drain.
const storedWorkers = 10

func storedUpstream(tps float64) func(u *gateway.UpstreamConfig) {
	return func(u *gateway.UpstreamConfig) {
		u.TPS = tps
		u.Binds, u.Window = 1, storedWorkers
	}
}

// urgentParts are the parts of the split message with priority: 180
// characters in UCS-2 (360 octets), three parts of at most 134 octets
// from the ESME; with the signature, three segments to the SMSC.
func urgentParts(t *testing.T) [][]byte {
	t.Helper()
	return chunks(ucs2(t, strings.Repeat("验证码三八四九二一", 20)), 134)
}

// sendPart submits part seq of parts (UDH, 8-bit reference 9) to dest,
// with priority_flag 1 if priority.
func sendPart(ctx context.Context, t *testing.T, e *esme, dest string, parts [][]byte, seq int, priority bool) {
	t.Helper()
	p := partSM(dest, 0x08, splitUDH8, 9, uint8(len(parts)), uint8(seq), parts[seq-1])
	if priority {
		_ = p.Fields().Set(pdufield.PriorityFlag, uint8(1))
	}
	if _, err := e.submit(ctx, p); err != nil {
		t.Fatalf("part %d: %v", seq, err)
	}
}

// positions returns the indexes in what the SMSC received of the
// segments to dest.
func positions(rec []smpp.SimMessage, dest string) []int {
	var out []int
	for i, m := range rec {
		if m.Dest == dest {
			out = append(out, i)
		}
	}
	return out
}

// TestPrioritySplitAcrossARestart: an ESME splits a message itself and
// sends its parts with priority_flag 1 behind a backlog of 500 of its
// ordinary messages, while the SMSC refuses the bind; the gateway
// restarts on the same file before the message is joined. Whether the
// ESME sends the last part after the restart (without the flag: the
// stored parts have it) or the last part was acknowledged and the process
// stopped before the join (housekeeping joins it at start), the message
// goes out ahead of the backlog: its segments among the first windows
// sent after it was joined, where without the stored flag it waited for
// the whole backlog.
func TestPrioritySplitAcrossARestart(t *testing.T) {
	t.Run("the last part after the restart", func(t *testing.T) { prioritySplitAcrossARestart(t, false) })
	t.Run("joined by housekeeping at start", func(t *testing.T) { prioritySplitAcrossARestart(t, true) })
}

func prioritySplitAcrossARestart(t *testing.T, storedWhole bool) {
	const backlog, dest = 500, "13900000001"
	parts := urgentParts(t)
	if len(parts) != 3 {
		t.Fatalf("%d parts, want 3", len(parts))
	}
	path := filepath.Join(t.TempDir(), "q.db")
	refused := newRig(t, rigOpts{dbPath: path, sim: smpp.SimOptions{DLRDelay: time.Millisecond},
		upstream: func(u *gateway.UpstreamConfig) { u.Password = "not the SMSC's" }})
	e, err := refused.bind("esme", "pw", smpp.BindTransceiver)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	submitN(t, e, backlog, "1370000")
	for seq := 1; seq < len(parts); seq++ {
		sendPart(ctx, t, e, dest, parts, seq, true)
	}
	if n := len(refused.sim.Received()); n != 0 {
		t.Fatalf("%d sent to an SMSC that refuses the bind", n)
	}
	refused.stop()

	if storedWhole {
		// The file as the process leaves it when it stops after the last
		// part's submit_sm_resp and before the join: every part stored,
		// each with the flag its submit_sm had.
		s, err := queue.Open(path, queue.Options{})
		if err != nil {
			t.Fatal(err)
		}
		groups, err := s.FragmentGroups()
		if err != nil || len(groups) != 1 || groups[0].Complete {
			t.Fatalf("pending groups %+v, %v; want the one with its last part missing", groups, err)
		}
		stored, err := s.Fragments(groups[0].Group)
		if err != nil || len(stored) != len(parts)-1 || !stored[0].Priority {
			t.Fatalf("stored parts: %d, %v; want %d with priority", len(stored), err, len(parts)-1)
		}
		last := *stored[0]
		last.ID, last.ArrivedAt = 0, time.Time{}
		last.Seq, last.Data = uint8(len(parts)), parts[len(parts)-1]
		if res, err := s.StoreFragment(ctx, &last, queue.FragmentLimits{}); err != nil || !res.Complete {
			t.Fatalf("the last part: %+v, %v; want it to complete the group", res, err)
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
	}

	r := newRig(t, rigOpts{dbPath: path, sim: smpp.SimOptions{DLRDelay: time.Millisecond}, upstream: storedUpstream(100)})
	sent := 0 // of the backlog, when the message was joined
	if !storedWhole {
		e, err := r.bind("esme", "pw", smpp.BindTransceiver)
		if err != nil {
			t.Fatal(err)
		}
		sent = len(r.sim.Received())
		sendPart(ctx, t, e, dest, parts, len(parts), false)
	}
	if sent > backlog/2 {
		t.Fatalf("%d of the backlog already sent: no backlog to skip", sent)
	}
	// Its segments go one at a time in the lane (one in flight an
	// enterprise), each after at most the windows' worth in flight when
	// it came: a segment after the last of those is late.
	const segments = 3
	limit := sent + segments*2*storedWorkers
	var at []int
	waitFor(t, 30*time.Second, "the message with priority at the SMSC", func() bool {
		rec := r.sim.Received()
		at = positions(rec, dest)
		return len(at) >= segments || len(rec) > limit
	})
	if len(at) < segments {
		t.Fatalf("the message with priority: %d of %d segments among the first %d sent after the restart (%d out when it was joined), want all: it waits behind the backlog of %d",
			len(at), segments, limit, sent, backlog)
	}
	if last := at[segments-1]; last >= limit {
		t.Errorf("the last segment of the message with priority went out %dth (%d out when it was joined), want before %d", last+1, sent, limit)
	}
	t.Logf("backlog %d at 100/s, %d out when the split message was joined: its segments out %v (0-based)", backlog, sent, at)
}

// dueOf returns the due time of the one part of message id once pred
// holds for it.
func dueOf(t *testing.T, r *rig, id string, what string, pred func(p queue.Part) bool) time.Time {
	t.Helper()
	n, err := strconv.ParseUint(id, 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	var due time.Time
	waitFor(t, 10*time.Second, what, func() bool {
		m, err := r.store.Get(n)
		if err != nil || len(m.Parts) != 1 || !pred(m.Parts[0]) {
			return false
		}
		due = m.Parts[0].DueAt
		return true
	})
	return due
}

// aheadOfTheBacklog waits for due, notes how many were out then, and
// checks that the message to dest goes out within the windows' worth
// in flight (the dispatcher finds it at its next scan of the store, its
// priority pass first), not behind the rest of the backlog.
func aheadOfTheBacklog(t *testing.T, r *rig, due time.Time, backlog int, dest string) {
	t.Helper()
	if time.Now().After(due) {
		t.Fatalf("the backlog was queued only %v after the message with priority came due: nothing to skip (a slow machine?)", time.Since(due))
	}
	waitFor(t, time.Until(due)+5*time.Second, "the due time", func() bool { return !time.Now().Before(due) })
	sent := len(r.sim.Received())
	if sent > backlog/2 {
		t.Fatalf("%d of the backlog already sent when the message with priority came due: no backlog to skip", sent)
	}
	limit := sent + 2*storedWorkers
	pos := -1
	waitFor(t, 30*time.Second, "the message with priority at the SMSC", func() bool {
		rec := r.sim.Received()
		pos = slices.IndexFunc(rec, func(m smpp.SimMessage) bool { return m.Dest == dest })
		return pos >= 0 || len(rec) > limit
	})
	if pos < 0 || pos >= limit {
		t.Fatalf("the message with priority not among the first %d sent (%d out when it came due), want it within the windows' %d: it waits behind the backlog of %d",
			limit, sent, 2*storedWorkers, backlog)
	}
	t.Logf("backlog %d, %d out when the message with priority came due: out %dth", backlog, sent, pos+1)
}

// TestPriorityRetryAheadOfTheBacklog: a message sent with priority that
// the SMSC throttles until it goes back to the store (Retry, due 2 s
// later) goes out at its new time ahead of the backlog of 300 ordinary
// messages queued meanwhile (at 50 a second: 100 out by then), which are
// due before it.
func TestPriorityRetryAheadOfTheBacklog(t *testing.T) {
	const backlog, dest = 300, "13900000001"
	r := newRig(t, rigOpts{sim: smpp.SimOptions{DLRDelay: time.Millisecond, Faults: smpp.Faults{Throttle: 1}},
		upstream: storedUpstream(50),
		gwcfg:    func(c *gateway.Config) { c.RetryMin, c.RetryMax = 2*time.Second, 2*time.Second }})
	e, err := r.bind("esme", "pw", smpp.BindTransceiver)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	p := submitSM("1069", dest, "code 384921")
	_ = p.Fields().Set(pdufield.PriorityFlag, uint8(1))
	id, err := e.submit(ctx, p)
	if err != nil {
		t.Fatal(err)
	}
	due := dueOf(t, r, id, "the throttled message back in the store", func(p queue.Part) bool {
		return p.State == queue.StateAccepted && p.Attempts > 0
	})
	r.sim.SetFaults(smpp.Faults{})
	submitN(t, e, backlog, "1370000")
	aheadOfTheBacklog(t, r, due, backlog, dest)
}

// TestPriorityScheduledAheadOfTheBacklog: a message sent with priority
// and scheduled 2 s ahead (schedule_delivery_time) goes out at its time
// ahead of the backlog of 300 ordinary messages queued after it (at 50
// a second: 100 out by then), which are due before it.
func TestPriorityScheduledAheadOfTheBacklog(t *testing.T) {
	const backlog, dest = 300, "13900000001"
	r := newRig(t, rigOpts{sim: smpp.SimOptions{DLRDelay: time.Millisecond}, upstream: storedUpstream(50)})
	e, err := r.bind("esme", "pw", smpp.BindTransceiver)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	p := submitSM("1069", dest, "code 384921")
	_ = p.Fields().Set(pdufield.PriorityFlag, uint8(1))
	_ = p.Fields().Set(pdufield.ScheduleDeliveryTime, "000000000002000R") // in 2 s
	id, err := e.submit(ctx, p)
	if err != nil {
		t.Fatal(err)
	}
	due := dueOf(t, r, id, "the scheduled message in the store", func(p queue.Part) bool { return p.State == queue.StateAccepted })
	submitN(t, e, backlog, "1370000")
	aheadOfTheBacklog(t, r, due, backlog, dest)
}
