package reminder

import (
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	bolt "go.etcd.io/bbolt"

	"github.com/qxtd/qxtd/gateway"
	"github.com/qxtd/qxtd/policy"
	"github.com/qxtd/qxtd/queue"
	"github.com/qxtd/qxtd/segment"
)

// Defaults of Config.
const (
	DefaultGrace = time.Hour
	DefaultAhead = 24 * time.Hour
	DefaultTick  = time.Minute
	// DefaultMaxPerUser and DefaultMaxPerEnterprise bound the series a
	// user, and all the users of an enterprise, may keep. A person's own
	// reminders (a weekly meeting, the monthly report, birthdays) are a
	// few dozen; 1,000 is ten users at their limit. They bound what the
	// store holds and what the scheduler and the admin's week listing
	// read: without them any user could store series until the node ran
	// out of memory.
	DefaultMaxPerUser       = 100
	DefaultMaxPerEnterprise = 1000
)

// MaxExceptions bounds the changed or deleted occurrences a series keeps
// (each can carry its own text; those of days older than 400 days are
// dropped): changing more than that is changing the series. Without it a
// daily series could hold a text for every day of 20 years.
const MaxExceptions = 100

// MaxText is the most characters (code points) a reminder's text may
// have: a message's limit (segment.DefaultMaxChars, policy's too_long),
// which counts the signatures too — checked with them where the gateway
// can tell (Service.checkText).
const MaxText = segment.DefaultMaxChars

// maxMove bounds how far an edited occurrence may move from its day.
const maxMove = 7 * 24 * time.Hour

// Config configures a Service.
type Config struct {
	DB      *bolt.DB // the daemon's state file (queue.OpenDB); the caller closes it
	Gateway *gateway.Gateway
	Policy  *policy.Policy
	// Grace: an occurrence whose send time passed while the daemon was
	// down is sent at start if it is at most this late, else marked
	// missed. 0: DefaultGrace.
	Grace time.Duration
	// Ahead: occurrences are handed to the gateway as scheduled messages
	// this long before their send time. 0: DefaultAhead.
	Ahead time.Duration
	// Tick: how often the scheduler looks for occurrences entering the
	// Ahead window (every change wakes it too). 0: DefaultTick.
	Tick time.Duration
	// MaxPerUser and MaxPerEnterprise: the most series a user, and an
	// enterprise, may keep (Create refuses one more with ErrLimit). 0:
	// DefaultMaxPerUser, DefaultMaxPerEnterprise.
	MaxPerUser, MaxPerEnterprise int
	Now                          func() time.Time // nil: time.Now
	Logger                       *slog.Logger
	// Shared, when set, makes the reminder buckets shared state of a
	// cluster (cluster.Replica implements it, as for policy): every write
	// runs through Shared.Update (fn may run again: the writes are
	// idempotent) and a change applied from any node wakes the scheduler.
	// Whether this node runs the scheduler (Run) is the daemon's choice: in
	// a cluster, only the leader. nil: plain db.Update.
	Shared policy.Committer
	// Write, if set, runs every write to DB without Shared instead of
	// db.Update (policy.StoreOptions.Write: the daemon's is
	// queue.Store.Update).
	Write func(ctx context.Context, fn func(tx *bolt.Tx) error) error
}

// sharedTimeout bounds one write through Config.Shared.
const sharedTimeout = 30 * time.Second

// Service keeps the reminders and sends their occurrences.
type Service struct {
	cfg  Config
	log  *slog.Logger
	mu   sync.Mutex // serialises every change of a series and the scheduler's pass
	wake chan struct{}

	// The scheduler's memo of each stored series, by key (memo.go), and
	// the seed of its fingerprints; held under mu, one entry a stored
	// series (series gone are dropped at the next pass).
	memo map[string]memo
	seed maphash.Seed
	// decodes counts the heads a pass decoded (tests); memoOff makes a
	// pass decode every series, as before the memo (the benchmark's
	// baseline).
	decodes uint64
	memoOff bool
}

// New opens (creating its bucket if needed) the reminders in cfg.DB.
func New(cfg Config) (*Service, error) {
	if cfg.Grace <= 0 {
		cfg.Grace = DefaultGrace
	}
	if cfg.Ahead <= 0 {
		cfg.Ahead = DefaultAhead
	}
	if cfg.Tick <= 0 {
		cfg.Tick = DefaultTick
	}
	if cfg.MaxPerUser <= 0 {
		cfg.MaxPerUser = DefaultMaxPerUser
	}
	if cfg.MaxPerEnterprise <= 0 {
		cfg.MaxPerEnterprise = DefaultMaxPerEnterprise
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	s := &Service{cfg: cfg, log: cfg.Logger, wake: make(chan struct{}, 1), memo: map[string]memo{}, seed: maphash.MakeSeed()}
	if cfg.Shared != nil {
		cfg.Shared.OnChange(func(_ *bolt.Tx, changed [][][]byte) {
			if changed == nil || slices.ContainsFunc(changed, func(p [][]byte) bool {
				return len(p) > 0 && string(p[0]) == string(bucketSeries)
			}) {
				s.kick() // the scheduler, if this node runs it, looks again
			}
		})
	}
	err := s.write(func(tx *bolt.Tx) error {
		_, err := tx.CreateBucketIfNotExists(bucketSeries)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("reminder: open: %w", err)
	}
	return s, nil
}

// write runs fn in a read-write transaction: db.Update, or through
// cfg.Shared in cluster mode (where fn may run more than once).
func (s *Service) write(fn func(tx *bolt.Tx) error) error {
	if s.cfg.Shared == nil {
		if s.cfg.Write == nil {
			return s.cfg.DB.Update(fn)
		}
		ctx, cancel := context.WithTimeout(context.Background(), sharedTimeout)
		defer cancel()
		return s.cfg.Write(ctx, fn)
	}
	ctx, cancel := context.WithTimeout(context.Background(), sharedTimeout)
	defer cancel()
	return s.cfg.Shared.Update(ctx, fn)
}

// Viewer is who looks: an enterprise, and one of its users (Account) or
// all of them (Account "", an enterprise admin).
type Viewer struct {
	Enterprise, Account string
}

func (v Viewer) sees(r *Reminder) bool {
	return r.Enterprise == v.Enterprise && (v.Account == "" || v.Account == r.Account)
}

// Spec is a new series, or the whole of a changed one.
type Spec struct {
	Text   string
	To     []string
	Groups []string
	Book   string
	Source string
	Rule   Rule
}

// Create stores a new series owned by owner; ErrLimit if the owner or its
// enterprise has as many as it may.
func (s *Service) Create(owner *policy.User, sp Spec) (*Reminder, error) {
	now := s.cfg.Now()
	r := &Reminder{Enterprise: owner.Enterprise, Account: owner.SystemID, Created: now, Updated: now, From: now}
	if err := s.apply(r, owner, sp, now); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	err := s.write(func(tx *bolt.Tx) error {
		// Counted in the transaction that adds it: in a cluster it is the
		// shared state as committed, so two nodes cannot both add the last.
		ent, user, err := countTx(tx, owner.Enterprise, owner.SystemID)
		switch {
		case err != nil:
			return err
		case user >= s.cfg.MaxPerUser:
			return fmt.Errorf("%w: %s has %d reminders, at most %d a user: delete one first", ErrLimit, owner.SystemID, user, s.cfg.MaxPerUser)
		case ent >= s.cfg.MaxPerEnterprise:
			return fmt.Errorf("%w: enterprise %s has %d reminders, at most %d an enterprise: delete one first", ErrLimit, owner.Enterprise, ent, s.cfg.MaxPerEnterprise)
		}
		id, err := tx.Bucket(bucketSeries).NextSequence()
		if err != nil {
			return err
		}
		r.ID = id
		return putTx(tx, r, now)
	})
	if errors.Is(err, ErrLimit) {
		return nil, err
	}
	if err != nil {
		return nil, fmt.Errorf("reminder: save: %w", err)
	}
	s.kick()
	return r, nil
}

// apply checks sp and sets it on r.
func (s *Service) apply(r *Reminder, owner *policy.User, sp Spec, now time.Time) error {
	switch {
	case strings.TrimSpace(sp.Text) == "":
		return invalidField("text", "请填写提醒内容", "text: required")
	case sp.Book != "" && sp.Book != BookPersonal && sp.Book != BookEnterprise:
		return invalid(`book: "personal" or "enterprise"`)
	case sp.Book != "" && len(sp.Groups) == 0:
		return invalid("book: only with groups")
	case len(sp.To) == 0 && len(sp.Groups) == 0 && owner.Mobile == "":
		return invalidField("to", "您没有登记手机号码：请填写接收号码", "to: the user has no registered mobile; name the recipients")
	}
	if err := s.checkText("text", owner, sp.Text); err != nil {
		return err
	}
	cls := s.cfg.Policy.Classifier()
	for _, n := range sp.To {
		// Not a phone number at all (the classifier's refusal: letters, or
		// longer than any number) is refused now, not at every occurrence;
		// it also bounds each of up to 1,000 numbers a series keeps.
		if _, err := cls.Classify(n); err != nil {
			_, _, msg := policy.Describe(err)
			return invalidField("to", numberZH(clip(n), err), "to: %q: %s", clip(n), msg)
		}
	}
	if err := sp.Rule.Check(now); err != nil {
		return err
	}
	if len(sp.Groups) > 0 {
		if _, err := s.cfg.Policy.GroupNumbers(policy.ActorFor(owner), book(owner, sp.Book), sp.Groups); err != nil {
			return err
		}
	}
	r.Text, r.To, r.Groups, r.Book, r.Source, r.Rule = sp.Text, sp.To, sp.Groups, sp.Book, sp.Source, sp.Rule
	return nil
}

// checkText refuses a text that could not go out as one message: more than
// MaxText characters, or — with the signatures the gateway adds now
// (gateway.Preview, the send path's own signing and counting) — too long
// or not encodable. Refused here, not only when an occurrence is sent,
// because every series and changed occurrence is kept and read again: an
// unchecked text is as long as the HTTP body (1 MiB). A signature that
// grows later can still make an occurrence too long: that one is refused
// when it is sent (too_long, in the week listing), as any message.
func (s *Service) checkText(field string, owner *policy.User, text string) error {
	if n := utf8.RuneCountInString(text); n > MaxText {
		return invalidField(field, fmt.Sprintf("共 %d 个字，最多 %d 个字（含签名）", n, MaxText), "%s: %d characters, at most %d including the signature", field, n, MaxText)
	}
	if s.cfg.Gateway == nil { // a store without sending (the cluster's tests): the count above
		return nil
	}
	ent, ok := s.cfg.Policy.Lookup(owner.Enterprise)
	if !ok {
		return nil // gone: the occurrence's send says so
	}
	p, err := s.cfg.Gateway.Preview(gateway.AccountFor(owner, ent), text, "")
	switch {
	case err != nil:
		// An account-level refusal (disabled, no signature yet) may be
		// lifted before the occurrence is due; its send will tell.
		return nil
	case p.Refusal == nil:
		return nil
	case p.Refusal.Reason == policy.ReasonTooLong:
		return invalidField(field, fmt.Sprintf("共 %d 个字（含签名），最多 %d 个字", p.Chars, p.MaxChars), "%s: %d characters with the signature (%d without), at most %d", field, p.Chars, utf8.RuneCountInString(text), p.MaxChars)
	}
	_, _, msg := policy.Describe(p.Refusal)
	zh := p.Refusal.Reason.MessageZH()
	if d := policy.DetailZH(p.Refusal); d != "" {
		zh += "（" + d + "）"
	}
	return invalidField(field, zh, "%s: %s", field, msg)
}

// numberZH says in Chinese why n is not a number to remind: the
// classifier's Chinese detail, else that it is none.
func numberZH(n string, err error) string {
	if d := policy.DetailZH(err); d != "" {
		return d
	}
	return n + " 不是手机号码"
}

// clip shortens a refused value for its error message.
func clip(v string) string {
	const most = 24
	if utf8.RuneCountInString(v) <= most {
		return v
	}
	return string([]rune(v)[:most]) + "…"
}

func book(u *policy.User, kind string) policy.Book {
	if kind == BookEnterprise {
		return policy.EnterpriseBook(u.Enterprise)
	}
	return policy.PersonalBook(u)
}

// Get returns series id if v sees it.
func (s *Service) Get(v Viewer, id uint64) (*Reminder, error) {
	var r *Reminder
	err := s.cfg.DB.View(func(tx *bolt.Tx) error {
		var err error
		r, err = getTx(tx, v.Enterprise, id)
		return err
	})
	if err != nil {
		return nil, err
	}
	if !v.sees(r) {
		return nil, fmt.Errorf("%w: reminder %d", ErrNotFound, id)
	}
	return r, nil
}

// List returns every series v sees, oldest first.
func (s *Service) List(v Viewer) ([]*Reminder, error) {
	var out []*Reminder
	err := s.cfg.DB.View(func(tx *bolt.Tx) error {
		return each(tx, v.Enterprise, func(r *Reminder) error {
			if v.sees(r) {
				out = append(out, r)
			}
			return nil
		})
	})
	return out, err
}

// Update replaces the series' text, recipients and rule with sp, checked
// as Create checks them (the owner stays). Messages already scheduled for
// its occurrences are cancelled and made again from the new series; what
// was sent stays sent. A changed rule starts from now: earlier
// occurrences of the new rule are not sent late.
func (s *Service) Update(ctx context.Context, v Viewer, id uint64, sp Spec) (*Reminder, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, err := s.Get(v, id)
	if err != nil {
		return nil, err
	}
	owner, err := s.owner(r)
	if err != nil {
		return nil, err
	}
	now := s.cfg.Now()
	ruleChanged := !sameRule(r.Rule, sp.Rule)
	if err := s.apply(r, owner, sp, now); err != nil {
		return nil, err
	}
	s.unschedule(ctx, r, func(string) bool { return true }, now)
	if ruleChanged {
		r.From = now
		r.Exceptions = nil
	}
	r.Updated = now
	if err := s.put(r, now); err != nil {
		return nil, err
	}
	s.kick()
	return r, nil
}

// owner is the user who owns r, as it is now.
func (s *Service) owner(r *Reminder) (*policy.User, error) {
	u, err := s.cfg.Policy.User(policy.OperatorActor("reminders"), r.Account)
	if err != nil {
		return nil, fmt.Errorf("%w: the reminder's owner %s no longer exists", ErrInvalid, r.Account)
	}
	return u, nil
}

func sameRule(a, b Rule) bool {
	return a.Freq == b.Freq && a.Start.Equal(b.Start) && slices.Equal(a.Weekdays, b.Weekdays) &&
		a.MonthDay == b.MonthDay && a.Until == b.Until && a.Count == b.Count && a.Before == b.Before
}

// Delete removes the series and cancels its scheduled messages.
func (s *Service) Delete(ctx context.Context, v Viewer, id uint64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, err := s.Get(v, id)
	if err != nil {
		return err
	}
	s.unschedule(ctx, r, func(string) bool { return true }, s.cfg.Now())
	err = s.write(func(tx *bolt.Tx) error { return tx.Bucket(bucketSeries).Delete(key(r.Enterprise, r.ID)) })
	if err != nil {
		return fmt.Errorf("reminder: delete: %w", err)
	}
	return nil
}

// OccurrenceEdit changes one occurrence: its event time (zero: as the
// rule says; at most a week from its day) and/or its text ("" = the
// series').
type OccurrenceEdit struct {
	At   time.Time
	Text string
}

// EditOccurrence changes one occurrence of series id: an exception stored
// with the series (its text checked as the series'). Its scheduled
// message, if any, is cancelled and made again. ErrSent if it is sent or
// being sent; ErrLimit if the series has MaxExceptions others.
func (s *Service) EditOccurrence(ctx context.Context, v Viewer, id uint64, date string, e OccurrenceEdit) error {
	return s.except(ctx, v, id, date, func(r *Reminder, o Occurrence, now time.Time) (Exception, error) {
		ex := r.Exceptions[date]
		if !e.At.IsZero() {
			if d := e.At.Sub(o.At); d > maxMove || d < -maxMove {
				return ex, invalidField("at", "改期最多提前或推后 7 天", "at: at most 7 days from the occurrence's day")
			}
			if !e.At.Add(-time.Duration(r.Rule.Before) * time.Minute).After(now) {
				return ex, invalidField("at", "改后的时间已过", "at: the occurrence's message would be in the past")
			}
			// 9999-12-31T20:00:00-08:00 is in 10000 in Asia/Shanghai.
			if day(e.At).After(lastDay) {
				return ex, invalid("at: after %s", lastDay.Format(Date))
			}
			ex.At = e.At
		}
		if e.Text != "" {
			owner, err := s.owner(r)
			if err != nil {
				return ex, err
			}
			if err := s.checkText("text", owner, e.Text); err != nil {
				return ex, err
			}
			ex.Text = e.Text
		}
		return ex, nil
	})
}

// DeleteOccurrence deletes one occurrence of series id (an exception
// stored with the series) and cancels its scheduled message. ErrSent if
// it is sent or being sent; ErrLimit as EditOccurrence.
func (s *Service) DeleteOccurrence(ctx context.Context, v Viewer, id uint64, date string) error {
	return s.except(ctx, v, id, date, func(r *Reminder, _ Occurrence, _ time.Time) (Exception, error) {
		return Exception{Deleted: true}, nil
	})
}

func (s *Service) except(ctx context.Context, v Viewer, id uint64, date string, fn func(*Reminder, Occurrence, time.Time) (Exception, error)) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, err := s.Get(v, id)
	if err != nil {
		return err
	}
	d, err := time.ParseInLocation(Date, date, Shanghai)
	if err != nil {
		return fmt.Errorf("%w: occurrence %q of reminder %d", ErrNotFound, date, id)
	}
	var occ *Occurrence
	for _, o := range r.Rule.Between(d, d.AddDate(0, 0, 1)) {
		occ = &o
	}
	if occ == nil || r.Exceptions[date].Deleted || r.effective(*occ).SendAt.Before(r.From) {
		return fmt.Errorf("%w: occurrence %s of reminder %d", ErrNotFound, date, id)
	}
	now := s.cfg.Now()
	if st, ok := r.Occ[date]; ok && (st.State != StateScheduled || !st.SendAt.After(now)) {
		return fmt.Errorf("%w: occurrence %s is %s", ErrSent, date, st.State)
	}
	ex, err := fn(r, *occ, now)
	if err != nil {
		return err
	}
	if _, had := r.Exceptions[date]; !had {
		r.prune(now) // what putTx would drop does not count
		if n := len(r.Exceptions); n >= MaxExceptions {
			return fmt.Errorf("%w: reminder %d has %d changed or deleted occurrences, at most %d: change the series instead", ErrLimit, id, n, MaxExceptions)
		}
	}
	if left := s.unschedule(ctx, r, func(d string) bool { return d == date }, now); left > 0 {
		return fmt.Errorf("%w: occurrence %s", ErrSent, date)
	}
	if r.Exceptions == nil {
		r.Exceptions = map[string]Exception{}
	}
	r.Exceptions[date] = ex
	r.Updated = now
	if err := s.put(r, now); err != nil {
		return err
	}
	s.kick()
	return nil
}

// unschedule cancels the scheduled messages of the occurrences of r that
// match and forgets them (they are made again by the next pass). An
// occurrence whose message is already going out is kept; unschedule
// returns how many were kept.
func (s *Service) unschedule(ctx context.Context, r *Reminder, match func(date string) bool, now time.Time) int {
	acct := &gateway.Account{SystemID: r.Account, Enterprise: r.Enterprise}
	kept := 0
	for date, st := range r.Occ {
		if !match(date) || st.State != StateScheduled || !st.SendAt.After(now) {
			continue
		}
		var left []uint64
		for _, id := range st.IDs {
			err := s.cfg.Gateway.Cancel(ctx, acct, id)
			if err != nil && !errors.Is(err, queue.ErrNotFound) {
				left = append(left, id)
				if !errors.Is(err, queue.ErrNotScheduled) {
					s.log.Warn("reminder: cancel of a scheduled occurrence failed", "reminder", r.ID, "date", date, "message", id, "err", err)
				}
			}
		}
		if len(left) > 0 {
			st.IDs = left
			r.Occ[date] = st
			kept++
			continue
		}
		delete(r.Occ, date)
	}
	return kept
}

func (s *Service) put(r *Reminder, now time.Time) error {
	err := s.write(func(tx *bolt.Tx) error {
		if tx.Bucket(bucketSeries).Get(key(r.Enterprise, r.ID)) == nil {
			return fmt.Errorf("%w: reminder %d", ErrNotFound, r.ID)
		}
		return putTx(tx, r, now)
	})
	if err != nil && !errors.Is(err, ErrNotFound) {
		return fmt.Errorf("reminder: save: %w", err)
	}
	return err
}

// effective is o with its exception applied (Deleted is the caller's).
func (r *Reminder) effective(o Occurrence) Occurrence {
	if ex, ok := r.Exceptions[o.Date]; ok && !ex.At.IsZero() {
		o.At = ex.At
		o.SendAt = ex.At.Add(-time.Duration(r.Rule.Before) * time.Minute)
	}
	return o
}

// Listed is one occurrence in a week's listing.
type Listed struct {
	Reminder   uint64
	Account    string
	Date       string
	At, SendAt time.Time
	Text       string
	State      string // StatePending, StateScheduled, StateMissed, StateRefused
	MessageIDs []uint64
	Reason     string
	Edited     bool
}

// Week lists every occurrence, of the series v sees, whose event is in
// week w, in time order. Deleted occurrences are not listed, nor those
// sent more than occKeep ago (their records are gone).
func (s *Service) Week(v Viewer, w Week) ([]Listed, error) {
	var rs []*Reminder
	err := s.cfg.DB.View(func(tx *bolt.Tx) error {
		return eachAs(tx, v.Enterprise, func(l *listedSeries) error {
			if v.sees(&l.Reminder) {
				rs = append(rs, &l.Reminder)
			}
			return nil
		})
	})
	if err != nil {
		return nil, err
	}
	from, to := w.Start(), w.Next().Start()
	// What became of an occurrence is kept occKeep: one sent before that
	// has no record, and listing it would call it pending.
	kept := s.cfg.Now().Add(-occKeep)
	var out []Listed
	for _, r := range rs {
		for _, o := range r.occurrences(from, to) {
			if o.SendAt.Before(kept) {
				continue
			}
			l := Listed{Reminder: r.ID, Account: r.Account, Date: o.Date, At: o.At, SendAt: o.SendAt, Text: r.Text, State: StatePending}
			if ex, ok := r.Exceptions[o.Date]; ok {
				l.Edited = true
				if ex.Text != "" {
					l.Text = ex.Text
				}
			}
			if st, ok := r.Occ[o.Date]; ok {
				l.State, l.MessageIDs, l.Reason = st.State, st.IDs, st.Reason
			}
			out = append(out, l)
		}
	}
	slices.SortStableFunc(out, func(a, b Listed) int { return a.At.Compare(b.At) })
	return out, nil
}

// listedSeries is a series as the week listing reads it, without its
// recipients (up to 1,000 numbers, most of what a series holds): these
// fields, shallower than the embedded Reminder's, take their JSON names,
// so the decoder skips them. An admin's listing reads every series of
// the enterprise.
type listedSeries struct {
	Reminder
	To     skipped `json:"to"`
	Groups skipped `json:"groups"`
}

// skipped decodes to nothing.
type skipped struct{}

func (*skipped) UnmarshalJSON([]byte) error { return nil }

// occurrences are r's live occurrences (exceptions applied, deleted ones
// left out, none before r.From) whose event is in [from, to).
func (r *Reminder) occurrences(from, to time.Time) []Occurrence {
	var out []Occurrence
	for _, o := range r.Rule.Between(from.Add(-maxMove), to.Add(maxMove)) {
		if r.Exceptions[o.Date].Deleted {
			continue
		}
		o = r.effective(o)
		if o.At.Before(from) || !o.At.Before(to) || o.SendAt.Before(r.From) {
			continue
		}
		out = append(out, o)
	}
	return out
}
