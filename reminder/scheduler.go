package reminder

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/qxtd/qxtd/gateway"
	"github.com/qxtd/qxtd/policy"
)

// kick wakes the scheduler (a change may have brought an occurrence into
// the Ahead window); it never blocks.
func (s *Service) kick() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// Run is the scheduler: a pass at once (occurrences missed while the
// daemon was down are sent or marked missed), then one per Tick and after
// every change, until ctx ends. A pass that is sending finishes the
// occurrence at hand (its message and its record) before Run returns,
// and drops the passes' memo: a node that no longer leads the cluster's
// reminders keeps none, and one that leads again starts from a full pass.
func (s *Service) Run(ctx context.Context) {
	t := time.NewTimer(0)
	defer t.Stop()
	defer func() {
		s.mu.Lock()
		s.memo = map[string]memo{}
		s.mu.Unlock()
	}()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-s.wake:
		}
		if err := s.Materialise(ctx); err != nil && ctx.Err() == nil {
			s.log.Error("reminder: scheduler pass", "err", err)
		}
		t.Reset(s.cfg.Tick)
	}
}

// Materialise hands every occurrence whose send time is within Ahead to
// the gateway as a scheduled message (through Send: policy, quota and
// signatures apply), once: the occurrence's record (its message ids) is
// written right after Send committed. An occurrence more than Grace late
// is marked missed instead; one less late goes at once.
//
// A pass runs every Tick over every series. Of each it hashes the stored
// bytes (in bbolt's map: nothing is copied) and looks them up in the
// Service's memo (memo.go); it decodes only a series that is new or
// changed (whoever changed it: this Service or, in a cluster, the replica
// of another node's write) or that the memo says may have an occurrence
// due by now, and of it only its head (the rule, which occurrences are
// changed or done: no text, recipients or message ids), one at a time. A
// series with an occurrence due is then read whole, again one at a time.
// What a pass holds is the keys of the due series, not the series; the
// memo keeps one entry of 32 bytes and the key for each stored series.
func (s *Service) Materialise(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.cfg.Now()
	nowNano, useMemo := unixNano(now), nanoOK(now) && !s.memoOff
	if !useMemo {
		clear(s.memo)
	}
	type ref struct {
		enterprise string
		id         uint64
	}
	var due []ref
	err := s.cfg.DB.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketSeries)
		n := 0
		c := b.Cursor()
		for k, v := c.First(); k != nil; k, v = c.Next() {
			n++
			sum := fingerprint(s.seed, v)
			if m, ok := s.memo[string(k)]; ok && m.skip(sum, v, nowNano) {
				continue
			}
			var h head
			if err := json.Unmarshal(v, &h); err != nil {
				return fmt.Errorf("reminder %x: %w", k, err)
			}
			s.decodes++
			r := h.reminder()
			isDue := len(s.due(r, now)) > 0
			if isDue {
				due = append(due, ref{h.Enterprise, h.ID})
			}
			if useMemo {
				s.memo[string(k)] = memo{sum: sum, size: uint32(len(v)), seen: nowNano, wake: s.wakeAt(r, now, isDue)}
			}
		}
		// Every key met is in the memo: more entries are of series gone.
		if len(s.memo) > n {
			for k := range s.memo {
				if b.Get([]byte(k)) == nil {
					delete(s.memo, k)
				}
			}
		}
		return nil
	})
	if err != nil {
		clear(s.memo) // a pass cut short may have left keys of series gone
		return fmt.Errorf("reminder: read: %w", err)
	}
	for _, d := range due {
		if ctx.Err() != nil {
			return nil
		}
		var r *Reminder
		err := s.cfg.DB.View(func(tx *bolt.Tx) error {
			var err error
			r, err = getTx(tx, d.enterprise, d.id)
			return err
		})
		if errors.Is(err, ErrNotFound) {
			continue // deleted meanwhile from another node
		}
		if err != nil {
			return fmt.Errorf("reminder: read: %w", err)
		}
		if err := s.materialise(ctx, r); err != nil {
			return err
		}
	}
	return nil
}

// head is the part of a stored series a scheduler's pass decodes to tell
// whether it has an occurrence due: the fields it leaves out are skipped
// by the decoder, not kept.
type head struct {
	ID         uint64    `json:"id"`
	Enterprise string    `json:"enterprise"`
	Rule       Rule      `json:"rule"`
	From       time.Time `json:"from"`
	Exceptions map[string]struct {
		Deleted bool      `json:"deleted"`
		At      time.Time `json:"at"`
	} `json:"exceptions"`
	Occ map[string]struct{} `json:"occ"` // which occurrences are done, not what became of them
}

// reminder is h as a Reminder with what due reads.
func (h *head) reminder() *Reminder {
	r := &Reminder{ID: h.ID, Enterprise: h.Enterprise, Rule: h.Rule, From: h.From,
		Exceptions: make(map[string]Exception, len(h.Exceptions)), Occ: make(map[string]OccState, len(h.Occ))}
	for d, ex := range h.Exceptions {
		r.Exceptions[d] = Exception{Deleted: ex.Deleted, At: ex.At}
	}
	for d := range h.Occ {
		r.Occ[d] = OccState{}
	}
	return r
}

// due are the occurrences of r whose message goes out within Ahead of
// now and that have no record yet.
//
// Occurrences sent more than occKeep ago are none of it: their records are
// pruned (putTx), so they would look undone, be recorded missed again at
// every pass and pruned again by that very write (a daily series 402 days
// old had two such a pass, each a write and a warning, and one more every
// day after). Leaving them out also bounds a pass's work on a long series
// to occKeep's worth of occurrences, not everything since its start.
func (s *Service) due(r *Reminder, now time.Time) []Occurrence {
	horizon := now.Add(s.cfg.Ahead)
	before := time.Duration(r.Rule.Before) * time.Minute
	kept := now.Add(-occKeep)
	from := r.From.Add(-before)
	if from.Before(kept) {
		from = kept // an occurrence's send time is never after its time
	}
	var out []Occurrence
	for _, o := range r.occurrences(from, horizon.Add(before)) {
		if _, done := r.Occ[o.Date]; !done && !o.SendAt.After(horizon) && !o.SendAt.Before(kept) {
			out = append(out, o)
		}
	}
	return out
}

func (s *Service) materialise(ctx context.Context, r *Reminder) error {
	now := s.cfg.Now()
	for _, o := range s.due(r, now) {
		if ctx.Err() != nil {
			return nil
		}
		st, retry := s.fire(ctx, r, o, now)
		if retry {
			continue // the next pass tries again
		}
		if err := s.record(r, o.Date, st, now); err != nil {
			return err
		}
	}
	return nil
}

// fire sends one occurrence, or marks it missed. retry: nothing was
// stored and nothing is to be recorded (rate limit, store failure).
func (s *Service) fire(ctx context.Context, r *Reminder, o Occurrence, now time.Time) (st OccState, retry bool) {
	st.SendAt = o.SendAt
	if o.SendAt.Before(now.Add(-s.cfg.Grace)) {
		st.State = StateMissed
		s.log.Warn("reminder: occurrence missed", "reminder", r.ID, "enterprise", r.Enterprise, "date", o.Date, "send_at", o.SendAt)
		return st, false
	}
	owner, err := s.cfg.Policy.User(policy.OperatorActor("reminders"), r.Account)
	if err != nil {
		return refused(st, "the reminder's owner no longer exists"), false
	}
	ent, ok := s.cfg.Policy.Lookup(r.Enterprise)
	if !ok {
		return refused(st, "the enterprise no longer exists"), false
	}
	dests, err := s.recipients(r, owner)
	if err != nil {
		return refused(st, err.Error()), false
	}
	text := r.Text
	if ex := r.Exceptions[o.Date]; ex.Text != "" {
		text = ex.Text
	}
	sendAt := o.SendAt
	if !sendAt.After(now) {
		sendAt = time.Time{} // late (within the grace period): at once
	}
	// The message and its record are one step: a shutdown waits for both.
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	res, err := s.cfg.Gateway.Send(sctx, gateway.AccountFor(owner, ent), gateway.SendRequest{
		Ingress: "http", Source: r.Source, Dests: dests, Text: text, SendAt: sendAt, Once: true,
	})
	reason, _ := policy.ReasonOf(err)
	switch {
	case reason == policy.ReasonRateLimited, errors.Is(err, gateway.ErrStore):
		s.log.Warn("reminder: send deferred", "reminder", r.ID, "date", o.Date, "err", err)
		return st, true
	case err != nil:
		_, _, msg := policy.Describe(err)
		return refused(st, msg), false
	}
	var reasons []string
	nrefused := 0
	for _, rr := range res {
		if rr.Duplicate {
			continue // a number in two of its groups: one message
		}
		if rr.Err != nil {
			// The first few, and how many more: the record is kept 400
			// days and read with its series, and a group can be thousands.
			if nrefused++; nrefused <= maxReasons {
				_, _, msg := policy.Describe(rr.Err)
				reasons = append(reasons, rr.Dest+": "+msg)
			}
			continue
		}
		st.IDs = append(st.IDs, rr.ID)
	}
	if more := nrefused - len(reasons); more > 0 {
		reasons = append(reasons, fmt.Sprintf("and %d more refused", more))
	}
	st.Reason = strings.Join(reasons, "; ")
	if len(st.IDs) == 0 {
		return refused(st, st.Reason), false
	}
	st.State = StateScheduled
	return st, false
}

// maxReasons bounds the refused recipients an occurrence's record names.
const maxReasons = 10

func refused(st OccState, reason string) OccState {
	st.State, st.Reason = StateRefused, reason
	return st
}

// recipients are the numbers of r, its groups' members (as they are now)
// or, with neither, the owner's registered mobile.
func (s *Service) recipients(r *Reminder, owner *policy.User) ([]string, error) {
	if len(r.To) == 0 && len(r.Groups) == 0 {
		if owner.Mobile == "" {
			return nil, errors.New("the user has no registered mobile")
		}
		return []string{strings.TrimPrefix(owner.Mobile, "+86")}, nil
	}
	out := append([]string(nil), r.To...)
	if len(r.Groups) == 0 {
		return out, nil
	}
	numbers, err := s.cfg.Policy.GroupNumbers(policy.ActorFor(owner), book(owner, r.Book), r.Groups)
	if err != nil {
		_, _, msg := policy.Describe(err)
		return nil, errors.New(msg)
	}
	seen := map[string]bool{}
	cls := s.cfg.Policy.Classifier()
	for _, n := range r.To {
		if cl, err := cls.Classify(n); err == nil && cl.Mobile {
			seen[cl.E164] = true
		}
	}
	for _, n := range numbers {
		if !seen[n] {
			seen[n] = true
			out = append(out, strings.TrimPrefix(n, "+86"))
		}
	}
	return out, nil
}

// record stores what became of one occurrence (a series deleted in the
// meantime cannot be: the scheduler holds s.mu).
func (s *Service) record(r *Reminder, date string, st OccState, now time.Time) error {
	if r.Occ == nil {
		r.Occ = map[string]OccState{}
	}
	r.Occ[date] = st
	err := s.write(func(tx *bolt.Tx) error {
		cur, err := getTx(tx, r.Enterprise, r.ID)
		if err != nil {
			return err
		}
		if cur.Occ == nil {
			cur.Occ = map[string]OccState{}
		}
		cur.Occ[date] = st
		return putTx(tx, cur, now)
	})
	if err != nil {
		return fmt.Errorf("reminder %d: record occurrence %s: %w", r.ID, date, err)
	}
	return nil
}
