package webhook

import (
	"context"
	"math"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/qxtd/qxtd/queue"
)

// What became of an enterprise's POSTs of receipts, and of its replies: its
// last RecentPosts of each (test receipts not counted), kept in memory by
// the node that made them
// and saved in its store every SaveEvery and when the sender stops
// (queue.HookPost), so that a restart carries them on. They feed its
// status (GET /v1/receipt-webhook: the last one, the recent ones, of
// receipts in status and of replies in reply_status), the desk's list of
// failing enterprises (of each kind) and
// qxtd_receipt_webhook_failing_since_seconds and
// qxtd_reply_webhook_failing_since_seconds too: they tell the enterprise
// what its endpoint answered and since when it fails, and the operator
// whom to call. A crash loses at most the POSTs of the last SaveEvery.

// RecentPosts is how many of an enterprise's last POSTs of receipts a node
// keeps, and how many of its replies.
const RecentPosts = 10

// Both kinds are saved in one record an enterprise.
var _ [queue.MaxHookPosts - 2*RecentPosts]struct{}

// maxOutcomeErr bounds the error text kept of a POST (an http.Client
// error quotes the URL): with RecentPosts an enterprise and a kind, the
// memory is bounded by the enterprises that ever had receipts or replies
// pushed (the store keeps them too).
const maxOutcomeErr = 300

// Outcome is how a POST of receipts, or of a reply (Reply), ended, as the
// store keeps it.
type Outcome = queue.HookPost

// outcomes is every enterprise's last POSTs.
type outcomes struct {
	mu    sync.Mutex
	m     map[string]*posts   // by enterprise
	dirty map[string]struct{} // the enterprises whose POSTs changed since the last save
}

// posts is an enterprise's last POSTs of each kind, oldest first, at most
// RecentPosts each: a busy reply endpoint does not push its receipts'
// POSTs out, nor the other way round.
type posts struct{ receipts, replies []Outcome }

func (p *posts) of(reply bool) *[]Outcome {
	if reply {
		return &p.replies
	}
	return &p.receipts
}

// last is the last POST of receipts, or with reply of replies, if any.
func (p *posts) last(reply bool) (Outcome, bool) {
	h := *p.of(reply)
	if len(h) == 0 {
		return Outcome{}, false
	}
	return h[len(h)-1], true
}

// load sets what a store kept (queue.Store.HookPosts), each enterprise's
// newest RecentPosts of each kind.
func (oc *outcomes) load(kept map[string][]Outcome) {
	oc.mu.Lock()
	defer oc.mu.Unlock()
	if oc.m == nil {
		oc.m = make(map[string]*posts, len(kept))
	}
	for ent, h := range kept {
		p := new(posts)
		for _, o := range h {
			*p.of(o.Reply) = append(*p.of(o.Reply), o)
		}
		p.receipts = slices.Clone(p.receipts[max(len(p.receipts)-RecentPosts, 0):])
		p.replies = slices.Clone(p.replies[max(len(p.replies)-RecentPosts, 0):])
		if len(p.receipts)+len(p.replies) > 0 {
			oc.m[ent] = p
		}
	}
}

// takeDirty returns a copy of the POSTs of each enterprise that changed
// since the last call, and forgets that they changed.
func (oc *outcomes) takeDirty() map[string][]Outcome {
	oc.mu.Lock()
	defer oc.mu.Unlock()
	if len(oc.dirty) == 0 {
		return nil
	}
	out := make(map[string][]Outcome, len(oc.dirty))
	for ent := range oc.dirty {
		p := oc.m[ent]
		out[ent] = slices.Concat(p.receipts, p.replies)
	}
	clear(oc.dirty)
	return out
}

// markDirty makes the next takeDirty return enterprises again (their
// save failed).
func (oc *outcomes) markDirty(enterprises map[string][]Outcome) {
	oc.mu.Lock()
	defer oc.mu.Unlock()
	for ent := range enterprises {
		oc.dirty[ent] = struct{}{}
	}
}

// add records enterprise's POST o (of receipts, or of a reply: o.Reply)
// that ended with err.
func (oc *outcomes) add(enterprise string, o Outcome, err error) {
	oc.mu.Lock()
	defer oc.mu.Unlock()
	if oc.m == nil {
		oc.m = make(map[string]*posts)
	}
	p := oc.m[enterprise]
	if p == nil {
		p = new(posts)
		oc.m[enterprise] = p
	}
	h := *p.of(o.Reply)
	var prev *Outcome
	if len(h) > 0 {
		prev = &h[len(h)-1]
		if prev.URL == o.URL {
			o.URL = prev.URL // one copy of a URL that does not change
		}
	}
	if err != nil {
		o.Err, o.FailingSince = err.Error(), o.At
		if len(o.Err) > maxOutcomeErr {
			cut := maxOutcomeErr
			for cut > 0 && !utf8.RuneStart(o.Err[cut]) {
				cut--
			}
			o.Err = o.Err[:cut] + "…"
		}
		if prev != nil && !prev.Delivered {
			o.FailingSince = prev.FailingSince
		}
	}
	if oc.dirty == nil {
		oc.dirty = make(map[string]struct{})
	}
	oc.dirty[enterprise] = struct{}{}
	if len(h) >= RecentPosts {
		h = h[:copy(h, h[len(h)-RecentPosts+1:])]
	}
	*p.of(o.Reply) = append(h, o)
}

// recent returns enterprise's last POSTs of receipts, or with reply of
// replies, newest first (a copy).
func (oc *outcomes) recent(enterprise string, reply bool) []Outcome {
	oc.mu.Lock()
	defer oc.mu.Unlock()
	var h []Outcome
	if p := oc.m[enterprise]; p != nil {
		h = *p.of(reply)
	}
	out := make([]Outcome, len(h))
	for i, o := range h {
		out[len(h)-1-i] = o
	}
	return out
}

// Failing is an enterprise whose last POST of receipts (or of replies)
// failed.
type Failing struct {
	Enterprise string
	Last       Outcome // its last POST; Last.FailingSince, since when they fail
}

// Failing returns the enterprises whose last POST of receipts by this
// process failed, the longest failing first, at most limit of them.
func (s *Sender) Failing(limit int) []Failing { return s.posts.failing(false, limit) }

// FailingReplies is Failing of the POSTs of replies: the enterprises whose
// reply endpoint failed its last POST.
func (s *Sender) FailingReplies(limit int) []Failing { return s.posts.failing(true, limit) }

func (oc *outcomes) failing(reply bool, limit int) []Failing {
	oc.mu.Lock()
	var out []Failing
	for ent, p := range oc.m {
		if o, ok := p.last(reply); ok && !o.Delivered {
			out = append(out, Failing{Enterprise: ent, Last: o})
		}
	}
	oc.mu.Unlock()
	slices.SortFunc(out, func(a, b Failing) int {
		if c := a.Last.FailingSince.Compare(b.Last.FailingSince); c != 0 {
			return c
		}
		return strings.Compare(a.Enterprise, b.Enterprise)
	})
	return out[:min(len(out), limit)]
}

// failingCollector exports, for each enterprise whose last POST of
// receipts failed, since when its POSTs have failed in a row
// (qxtd_receipt_webhook_failing_since_seconds{enterprise}), and with reply
// the same of its POSTs of replies
// (qxtd_reply_webhook_failing_since_seconds{enterprise}): an alert can
// then name the enterprise whose endpoint is down. Only failing
// enterprises have a series, so the labels are bounded by the enterprises
// with a broken endpoint, not by all of them.
type failingCollector struct {
	oc    *outcomes
	reply bool
}

var (
	failingDesc = prometheus.NewDesc("qxtd_receipt_webhook_failing_since_seconds",
		"For each enterprise whose last receipt webhook POST failed: the Unix time of the first failure in a row (absent once a POST is delivered).",
		[]string{"enterprise"}, nil)
	replyFailingDesc = prometheus.NewDesc("qxtd_reply_webhook_failing_since_seconds",
		"For each enterprise whose last reply webhook POST failed: the Unix time of the first failure in a row (absent once a POST is delivered).",
		[]string{"enterprise"}, nil)
)

func (c failingCollector) desc() *prometheus.Desc {
	if c.reply {
		return replyFailingDesc
	}
	return failingDesc
}

func (c failingCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc() }

func (c failingCollector) Collect(ch chan<- prometheus.Metric) {
	for _, f := range c.oc.failing(c.reply, math.MaxInt) {
		ch <- prometheus.MustNewConstMetric(c.desc(), prometheus.GaugeValue,
			float64(f.Last.FailingSince.UnixNano())/1e9, f.Enterprise)
	}
}

// SaveEvery is how often a running Sender saves the POSTs that changed.
const SaveEvery = 5 * time.Second

// saver saves the POSTs that changed every SaveEvery until ctx ends (Run
// saves once more after its last POST).
func (s *Sender) saver(ctx context.Context) {
	t := time.NewTicker(s.cfg.SaveEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			s.savePosts(ctx)
		}
	}
}

// savePosts writes the POSTs that changed since the last save to the
// store, one operation for all: a failed save (a full disk) is tried
// again at the next one.
func (s *Sender) savePosts(ctx context.Context) {
	changed := s.posts.takeDirty()
	if len(changed) == 0 {
		return
	}
	if err := s.cfg.Store.SaveHookPosts(ctx, changed); err != nil {
		s.posts.markDirty(changed)
		s.log.Warn("receipt webhook: the last POSTs not saved (kept in memory, tried again)", "enterprises", len(changed), "err", err)
		return
	}
	s.log.Debug("receipt webhook: last POSTs saved", "enterprises", len(changed))
}
