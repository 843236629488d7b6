package gateway_test

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fiorix/go-smpp/smpp/pdu/pdufield"

	"github.com/qxtd/qxtd/gateway"
	"github.com/qxtd/qxtd/smpp"
)

// TestPrioritySkipsTheBacklog: behind a backlog of 300 messages that the
// upstream's tps cap drains at 100 a second, a message submitted with
// priority_flag 1 (an OTP behind a campaign) goes out after at most the
// windows' worth of what was already in flight, while one submitted at
// the same moment without it waits its turn at the end. The same for a
// message the ESME split itself (two UDH parts, each with the flag,
// stored with each part: TestPrioritySplitAcrossARestart for a message
// joined after a restart).
func TestPrioritySkipsTheBacklog(t *testing.T) {
	whole := func(t *testing.T, ctx context.Context, e *esme, dest string, priority bool) {
		p := submitSM("1069", dest, "code 384921")
		if priority {
			_ = p.Fields().Set(pdufield.PriorityFlag, uint8(1))
		}
		if _, err := e.submit(ctx, p); err != nil {
			t.Fatal(err)
		}
	}
	split := func(t *testing.T, ctx context.Context, e *esme, dest string, priority bool) {
		parts := chunks(ucs2(t, strings.Repeat("验证码三八四九二一", 10)), 134)
		for i, data := range parts {
			p := partSM(dest, 0x08, splitUDH8, 7, uint8(len(parts)), uint8(i+1), data)
			if priority {
				_ = p.Fields().Set(pdufield.PriorityFlag, uint8(1))
			}
			if _, err := e.submit(ctx, p); err != nil {
				t.Fatalf("part %d: %v", i+1, err)
			}
		}
	}
	for _, tc := range []struct {
		name   string
		submit func(t *testing.T, ctx context.Context, e *esme, dest string, priority bool)
	}{{"submit_sm", whole}, {"split by the ESME", split}} {
		t.Run(tc.name, func(t *testing.T) { prioritySkipsTheBacklog(t, tc.submit) })
	}
}

func prioritySkipsTheBacklog(t *testing.T, submit func(t *testing.T, ctx context.Context, e *esme, dest string, priority bool)) {
	const backlog, tps = 300, 100
	r := newRig(t, rigOpts{sim: smpp.SimOptions{DLRDelay: time.Millisecond},
		upstream: func(u *gateway.UpstreamConfig) { u.TPS = tps; u.Binds, u.Window = 1, 10 }})
	e, err := r.bind("esme", "pw", smpp.BindTransceiver)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	submitN(t, e, backlog, "1370000")

	sent := len(r.sim.Received()) // before the two
	if sent > backlog/2 {
		t.Fatalf("%d of the backlog already sent: no backlog to skip", sent)
	}
	submit(t, ctx, e, "13900000001", true)
	submit(t, ctx, e, "13900000002", false)
	waitFor(t, 20*time.Second, "every message at the SMSC", func() bool {
		return slices.ContainsFunc(r.sim.Received(), func(m smpp.SimMessage) bool { return m.Dest == "13900000002" }) &&
			len(r.sim.Received()) >= backlog+2
	})
	order := make([]string, 0, backlog+2)
	for _, m := range r.sim.Received() {
		order = append(order, m.Dest)
	}
	pos, ordinary := slices.Index(order, "13900000001"), slices.Index(order, "13900000002")
	// In flight when it came: the bind's window and the parts the
	// dispatcher had handed its workers (the upstream's workers: 10).
	if ahead := pos - sent; pos < 0 || ahead > 2*10 {
		t.Errorf("the priority message went out after %d others submitted before it (%d of the backlog were out when it came), want at most the windows' 20", ahead, sent)
	}
	// The ordinary one waits for the backlog, within the windows' 20 of
	// its end: a few of the backlog can go out after it (runs saw it
	// 294th and 298th of 302, with the build before priority was stored
	// too; FIFO within an enterprise is not promised), while the priority
	// one is out within 20 of its arrival.
	if ordinary < backlog-2*10 {
		t.Errorf("the ordinary message went out %dth, before the backlog had drained", ordinary+1)
	}
	t.Logf("backlog %d at %d/s: %d out when the two came; the priority message %dth, the ordinary one %dth", backlog, tps, sent, pos+1, ordinary+1)
}

// TestPriorityPassedToTheSMSC: with upstreams[].pass_priority a message
// sent with priority reaches the SMSC with priority_flag 1, so that an
// SMSC that queues by it sends it first too; an ordinary one, and every
// one without the setting, with 0.
func TestPriorityPassedToTheSMSC(t *testing.T) {
	for _, pass := range []bool{true, false} {
		t.Run(fmt.Sprintf("pass_priority %v", pass), func(t *testing.T) {
			r := newRig(t, rigOpts{sim: smpp.SimOptions{DLRDelay: time.Millisecond},
				upstream: func(u *gateway.UpstreamConfig) { u.PassPriority = pass }})
			e, err := r.bind("esme", "pw", smpp.BindTransceiver)
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
			defer cancel()
			urgent := submitSM("1069", "13900000001", "code 384921")
			_ = urgent.Fields().Set(pdufield.PriorityFlag, uint8(2))
			if _, err := e.submit(ctx, urgent); err != nil {
				t.Fatal(err)
			}
			if _, err := e.submit(ctx, submitSM("1069", "13900000002", "news")); err != nil {
				t.Fatal(err)
			}
			waitFor(t, 10*time.Second, "both at the SMSC", func() bool { return len(r.sim.Received()) == 2 })
			flags := map[string]uint8{}
			for _, m := range r.sim.Received() {
				flags[m.Dest] = m.Priority
			}
			want := uint8(0)
			if pass {
				want = 1
			}
			if flags["13900000001"] != want || flags["13900000002"] != 0 {
				t.Errorf("priority_flag at the SMSC: %v, want %d for the priority message and 0 for the other", flags, want)
			}
		})
	}
}

// TestPriorityBehindALargeBacklog: behind a campaign of thousands of
// messages (far more than the dispatcher's hand-over holds, so that
// nearly all of it waits in the store), a message sent with priority
// goes out among the first few sent after it, whether it came alone or
// in a burst of such messages larger than the hand-over of the priority
// lane, so that most of them too are read back from the store. Each
// enterprise still has at most urgentMax of them in flight at a time
// (TestDispatcherPriorityLane; TestTenantShareOfWindows for the shares),
// so the burst goes out in turns beside the backlog, each ahead of it.
func TestPriorityBehindALargeBacklog(t *testing.T) {
	for _, tc := range []struct {
		name  string
		burst int // messages sent with priority at once
	}{{"one", 1}, {"a burst past the hand-over", 50}} {
		t.Run(tc.name, func(t *testing.T) { priorityBehindALargeBacklog(t, tc.burst) })
	}
}

func priorityBehindALargeBacklog(t *testing.T, burst int) {
	// One bind with a window of 10 and no recording slots: 10 workers,
	// a hand-over of 20 parts a lane (dueHandedMax), one part with
	// priority in flight an enterprise (urgentMax).
	const backlog, tps, workers = 3000, 200, 10
	r := newRig(t, rigOpts{sim: smpp.SimOptions{DLRDelay: time.Millisecond},
		upstream: func(u *gateway.UpstreamConfig) { u.TPS = tps; u.Binds, u.Window = 1, workers }})
	e, err := r.bind("esme", "pw", smpp.BindTransceiver)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	submitN(t, e, backlog, "1370000")
	sent := len(r.sim.Received())
	if sent > backlog/2 {
		t.Fatalf("%d of the backlog already sent: no backlog to skip", sent)
	}
	start := time.Now()
	urgent := make([]string, burst)
	for i := range urgent {
		urgent[i] = fmt.Sprintf("1390000%04d", i)
	}
	var wg sync.WaitGroup
	errs := make(chan error, burst)
	for _, dest := range urgent {
		wg.Go(func() {
			p := submitSM("1069", dest, "code 384921")
			_ = p.Fields().Set(pdufield.PriorityFlag, uint8(1))
			if _, err := e.submit(ctx, p); err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	// Each message with priority waits at most for the windows' worth in
	// flight when it came, and for the others of the burst in the lane
	// before it, each of which waits for a window's worth beside the
	// backlog: a message after the last of them is late.
	limit := sent + 2*workers + burst*2*workers
	var got map[string]int
	var latency time.Duration
	waitFor(t, 45*time.Second, "the messages sent with priority at the SMSC", func() bool {
		rec := r.sim.Received()
		got = make(map[string]int, burst)
		for i, m := range rec {
			if slices.Contains(urgent, m.Dest) {
				got[m.Dest] = i
			}
		}
		if len(got) == burst && latency == 0 {
			latency = time.Since(start)
		}
		return len(got) == burst || len(rec) > limit
	})
	last := -1
	for _, dest := range urgent {
		pos, ok := got[dest]
		if !ok {
			t.Fatalf("%s (priority) not out after %d messages (%d were out when it came): waits behind the backlog", dest, limit, sent)
		}
		last = max(last, pos)
	}
	if last >= limit {
		t.Errorf("the last message with priority went out %dth, %d after it came; want at most %d", last+1, last-sent, limit-sent)
	}
	t.Logf("backlog %d at %d/s, %d out when %d message(s) with priority came: the last of them out %dth (%d after), %v after",
		backlog, tps, sent, burst, last+1, last-sent, latency.Round(time.Millisecond))
}

// TestPriorityAfterARestart: a backlog and then a message with priority
// are stored while the SMSC refuses the bind; after a restart on the same
// file, with the SMSC taking binds again, the message with priority goes
// out in the first window, ahead of the backlog queued before it.
func TestPriorityAfterARestart(t *testing.T) {
	const backlog, workers = 500, 10
	path := filepath.Join(t.TempDir(), "q.db")
	refused := newRig(t, rigOpts{dbPath: path, sim: smpp.SimOptions{DLRDelay: time.Millisecond},
		upstream: func(u *gateway.UpstreamConfig) { u.Password = "not the SMSC's" }})
	e, err := refused.bind("esme", "pw", smpp.BindTransceiver)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	submitN(t, e, backlog, "1370000")
	p := submitSM("1069", "13900000001", "code 384921")
	_ = p.Fields().Set(pdufield.PriorityFlag, uint8(1))
	if _, err := e.submit(ctx, p); err != nil {
		t.Fatal(err)
	}
	if n := len(refused.sim.Received()); n != 0 {
		t.Fatalf("%d sent to an SMSC that refuses the bind", n)
	}
	refused.stop()

	start := time.Now()
	r := newRig(t, rigOpts{dbPath: path, sim: smpp.SimOptions{DLRDelay: time.Millisecond},
		upstream: func(u *gateway.UpstreamConfig) { u.Binds, u.Window = 1, workers }})
	pos := -1
	waitFor(t, 20*time.Second, "the message with priority at the SMSC", func() bool {
		rec := r.sim.Received()
		pos = slices.IndexFunc(rec, func(m smpp.SimMessage) bool { return m.Dest == "13900000001" })
		return pos >= 0 || len(rec) > 4*workers
	})
	switch {
	case pos < 0:
		t.Fatalf("after the restart the message with priority was not among the first %d out (%d queued before it), want in the first window (%d)",
			len(r.sim.Received()), backlog, workers)
	case pos >= workers:
		t.Errorf("after the restart the message with priority went out %dth (%d queued before it), want in the first window (%d)", pos+1, backlog, workers)
	}
	t.Logf("restart with %d queued before it: the message with priority out %dth, %v after the restart", backlog, pos+1, time.Since(start).Round(time.Millisecond))
}
