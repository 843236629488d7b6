package webhook

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"maps"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/qxtd/qxtd/queue"
	"github.com/qxtd/qxtd/segment"
)

// Replies pushed over HTTP (reply webhooks, like Kannel's sms-service
// get-url and Jasmin's HTTP MO routes): an MO of an enterprise with a
// reply_url is stored with a key in the queue's mohook bucket
// (queue/moreplies.go), and the Sender POSTs it as one JSON Reply, signed
// as receipts are (the same secret, headers and client: the timeout and
// the address check). The POSTs share the Sender's bounds with the
// receipts: Config.Workers in flight in all, Config.PerEnterprise of one
// enterprise's receipts and replies together. Any 2xx is a delivery;
// anything else is tried again after Config.Backoff doubled per attempt
// up to Config.MaxBackoff, and a reply still undelivered Config.MaxAge
// after it was received is given up and counted. A reply goes to the
// enterprise's reply_url as it is when the POST starts (Config.ReplyURL),
// retries included; one whose enterprise no longer has a reply_url is
// given up.

// Reply is the JSON body POSTed for one reply (MO): the fields of an
// entry of GET /v1/inbox (api.InboxItem) but "forwarded".
type Reply struct {
	ID         string    `json:"id"`          // the MO's id, as the inbox lists it
	From       string    `json:"from"`        // the handset
	To         string    `json:"to"`          // service number + extension, as the SMSC gave it
	Extension  string    `json:"extension"`   // the extension after the service number
	Account    string    `json:"account"`     // the user with that extension; "" = the enterprise
	Text       string    `json:"text"`        // the reply's text ("" for a binary one)
	ReceivedAt time.Time `json:"received_at"` // when qxtd received it from the SMSC
	// OptOut: the text is an opt-out keyword (回复TD退订): the number is
	// on the enterprise's opt-out list, and its sends to it are refused
	// opted_out (an integrator's CRM marks the customer unsubscribed).
	OptOut bool `json:"optout,omitempty"`
	ReplyBinary
}

// ReplyBinary is, for a reply that is not text (a binary data_coding, an
// application port, a coding qxtd does not read), what the handset sent,
// passed on as it came (Text is then ""): its octets in hex, the SMSC's
// data_coding, and the UDH without its concatenation IEs (hex, UDHL octet
// first; "" for none). SourcePort and DestinationPort are its application
// ports, from the SMSC's source_port and destination_port TLVs or else
// from the UDH's port IE (absent: none). A text reply has none of them.
type ReplyBinary struct {
	Binary          string `json:"binary,omitempty"`
	DataCoding      *int   `json:"data_coding,omitempty"`
	UDH             string `json:"udh,omitempty"`
	SourcePort      *int   `json:"source_port,omitempty"`
	DestinationPort *int   `json:"destination_port,omitempty"`
}

// ReplyBinaryOf is m's ReplyBinary.
func ReplyBinaryOf(m *queue.MO) ReplyBinary {
	if m.Binary == nil {
		return ReplyBinary{}
	}
	dc := int(m.DataCoding)
	b := ReplyBinary{Binary: hex.EncodeToString(m.Binary), DataCoding: &dc, UDH: hex.EncodeToString(m.UDH)}
	if u, _, err := segment.ParseUDH(m.UDH); err == nil && u.Ports {
		src, dst := int(u.SrcPort), int(u.DestPort)
		b.SourcePort, b.DestinationPort = &src, &dst
	}
	if m.SourcePort != nil {
		src := int(*m.SourcePort)
		b.SourcePort = &src
	}
	if m.DestPort != nil {
		dst := int(*m.DestPort)
		b.DestinationPort = &dst
	}
	return b
}

// Octets is the number of octets of a binary reply (0 for text).
func (b ReplyBinary) Octets() int { return len(b.Binary) / 2 }

// ReplyBatch is the JSON body of a POST to an enterprise that takes
// replies in batches (its reply_batch above 1): up to that many replies
// due at once, at least one.
type ReplyBatch struct {
	Replies []Reply `json:"replies"`
}

// ReplyOf builds the body of MO m's reply webhook.
func ReplyOf(m *queue.MO) Reply {
	return Reply{ID: strconv.FormatUint(m.ID, 10), From: m.Source, To: m.Dest, Extension: m.Extension,
		Account: m.Account, Text: m.Text, ReceivedAt: m.ReceivedAt, OptOut: m.OptOut, ReplyBinary: ReplyBinaryOf(m)}
}

// replyState is the Sender's state for replies, beside the receipts'.
type replyState struct {
	wake chan struct{}

	// readyMu guards ready: the enterprises the store named since the
	// last pass (RepliesReady, on the commit goroutine).
	readyMu sync.Mutex
	ready   map[string]struct{}

	// due is, for each enterprise that may have a reply pending, when its
	// next one comes due (zero: now). Only the reply loop touches it. A
	// full pass every Config.Poll adds the enterprises the store lists,
	// so a reply whose retry the loop did not see scheduled is found then.
	due map[string]time.Time
	rr  int

	// inflight (under Sender.mu) holds the MO ids being posted or waiting
	// for the acker: a pass must not read them as due again.
	inflight map[uint64]struct{}

	total   *prometheus.CounterVec
	latency prometheus.Histogram
}

func (s *Sender) initReplies() []prometheus.Collector {
	r := &s.replies
	r.wake = make(chan struct{}, 1)
	r.ready = make(map[string]struct{})
	r.due = make(map[string]time.Time)
	r.inflight = make(map[uint64]struct{})
	r.total = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "qxtd_reply_webhooks_total",
		Help: "Reply webhook POSTs by outcome: delivered (2xx), failed (to be retried), gave_up (past the maximum age, or the reply_url removed)."}, []string{"outcome"})
	for _, o := range []string{"delivered", "failed", "gave_up"} {
		r.total.WithLabelValues(o)
	}
	r.latency = prometheus.NewHistogram(prometheus.HistogramOpts{Name: "qxtd_reply_webhook_delivery_seconds",
		Help:    "Time from a reply's arrival to its reply webhook's 2xx.",
		Buckets: []float64{0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800, 3600, 21600, 86400}})
	store := s.cfg.Store
	pending := prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "qxtd_reply_webhook_pending",
		Help: "Reply webhooks stored and not yet delivered or given up."}, func() float64 {
		n, _ := store.ReplyPending()
		return float64(n)
	})
	return []prometheus.Collector{r.total, r.latency, pending, failingCollector{oc: &s.posts, reply: true}}
}

// RepliesReady tells the sender that replies of enterprises were queued.
// It never blocks for long: give it to the store's SetReplyCallback.
func (s *Sender) RepliesReady(enterprises []string) {
	r := &s.replies
	r.readyMu.Lock()
	for _, e := range enterprises {
		r.ready[e] = struct{}{}
	}
	r.readyMu.Unlock()
	s.wakeReplies()
}

func (s *Sender) wakeReplies() {
	select {
	case s.replies.wake <- struct{}{}:
	default:
	}
}

// runReplies posts due replies until ctx ends, taking its slots from sem
// (shared with the receipts) and counting its POSTs in wg; acks gets the
// delivered ones. It returns without waiting for the POSTs.
func (s *Sender) runReplies(ctx context.Context, sem chan struct{}, acks chan<- queue.Reply, wg *sync.WaitGroup) {
	t := time.NewTimer(0)
	defer t.Stop()
	var lastFull time.Time
	for {
		full := time.Since(lastFull) >= s.cfg.Poll
		if full {
			lastFull = time.Now()
		}
		s.fillReplies(ctx, full, sem, acks, wg)
		if !t.Stop() {
			select {
			case <-t.C:
			default:
			}
		}
		t.Reset(s.cfg.Poll - time.Since(lastFull))
		select {
		case <-ctx.Done():
			return
		case <-s.replies.wake:
		case <-t.C:
		}
	}
}

// fillReplies starts POSTs for the due replies of the enterprises that may
// have one, round robin, within the free workers and each enterprise's
// room: it reads no more replies than it can start.
func (s *Sender) fillReplies(ctx context.Context, full bool, sem chan struct{}, acks chan<- queue.Reply, wg *sync.WaitGroup) {
	r := &s.replies
	if full {
		listed, err := s.cfg.Store.ReplyEnterprises()
		if err != nil {
			s.log.Error("reply webhooks: list", "err", err)
		}
		keep := make(map[string]bool, len(listed))
		for _, e := range listed {
			keep[e] = true
			if _, ok := r.due[e]; !ok {
				r.due[e] = time.Time{}
			}
		}
		if err == nil {
			maps.DeleteFunc(r.due, func(e string, _ time.Time) bool { return !keep[e] })
		}
	}
	r.readyMu.Lock()
	for e := range r.ready {
		r.due[e] = time.Time{}
	}
	clear(r.ready)
	r.readyMu.Unlock()
	now := time.Now()
	var ents []string
	for e, at := range r.due {
		if !at.After(now) {
			ents = append(ents, e)
		}
	}
	if len(ents) == 0 {
		return
	}
	slices.Sort(ents)
	r.rr++
	start := r.rr % len(ents)
	for i := range ents {
		e := ents[(start+i)%len(ents)]
		free := cap(sem) - len(sem)
		if free <= 0 {
			return
		}
		// s.mu is held across the read, as fill's: a reply acknowledged
		// meanwhile must not leave the in-flight set before the read is
		// over, or the read's older snapshot shows it due again.
		s.mu.Lock()
		room := min(s.cfg.PerEnterprise-s.perEnt[e], free)
		if room <= 0 {
			s.mu.Unlock()
			continue
		}
		// A POST carries up to batch replies (all go to the enterprise's
		// one reply_url) and takes one slot however many: read at most
		// room POSTs' worth, and at most maxRead replies.
		batch := min(max(s.cfg.ReplyBatch(e), 1), MaxBatch)
		rs, next, err := s.cfg.Store.DueReplies(e, now, min(room*batch, max(room, maxRead)), func(id uint64) bool {
			_, busy := r.inflight[id]
			return busy
		})
		for _, rp := range rs {
			r.inflight[rp.MO.ID] = struct{}{}
		}
		s.mu.Unlock()
		if err != nil {
			s.log.Error("reply webhooks: due", "enterprise", e, "err", err)
			continue
		}
		if next.IsZero() {
			delete(r.due, e) // found again when the store names it, or at the next full pass
		} else {
			r.due[e] = next
		}
		posts := replyPosts(rs, batch)
		if len(posts) > room {
			// The texts' bound split the read into more POSTs than the
			// enterprise has room for: the rest stay due, read again at
			// the next pass (a POST that ends wakes it).
			var rest []queue.Reply
			for _, p := range posts[room:] {
				rest = append(rest, p...)
			}
			s.releaseReplies(rest)
			posts = posts[:room]
			r.due[e] = time.Time{}
		}
		for _, post := range posts {
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
				s.releaseReplies(rs)
				return
			}
			if ctx.Err() != nil { // both were ready: start no POST once stopping
				<-sem
				s.releaseReplies(rs)
				return
			}
			s.mu.Lock()
			s.perEnt[e]++
			s.mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				handed := s.deliverReplies(ctx, post, batch > 1, acks)
				s.mu.Lock()
				if !handed {
					for _, rp := range post {
						delete(r.inflight, rp.MO.ID)
					}
				}
				if s.perEnt[e]--; s.perEnt[e] <= 0 {
					delete(s.perEnt, e)
				}
				s.mu.Unlock()
				<-sem
				s.wakeReplies()
				s.Wake() // the slot may be a receipt's to take
			}()
		}
	}
}

// maxReplyBody bounds the texts one POST of replies carries (bytes): an
// MO's text is at most a PDU's 4 KiB (some 6 KiB once UTF-8), so 1,000 of
// them would make a POST of megabytes, and Config.Workers of them in
// flight hundreds; batches are cut at this many bytes of text instead,
// whatever reply_batch says.
const maxReplyBody = 256 << 10

// replyPosts cuts replies rs into POSTs of at most batch replies and, past
// the first reply of a POST, at most maxReplyBody bytes of text.
func replyPosts(rs []queue.Reply, batch int) [][]queue.Reply {
	var posts [][]queue.Reply
	start, size := 0, 0
	for i, rp := range rs {
		n := len(rp.MO.Text) + 2*len(rp.MO.Binary) + 2*len(rp.MO.UDH)
		if i > start && (i-start == batch || size+n > maxReplyBody) {
			posts = append(posts, rs[start:i:i])
			start, size = i, 0
		}
		size += n
	}
	if start < len(rs) {
		posts = append(posts, rs[start:])
	}
	return posts
}

// releaseReplies takes replies read but not started out of the in-flight
// set (the sender is stopping: they stay due for the next start). One
// started already is no longer in it or is ended by its POST.
func (s *Sender) releaseReplies(rs []queue.Reply) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, rp := range rs {
		delete(s.replies.inflight, rp.MO.ID)
	}
}

// errNoReplyURL gives up a reply whose enterprise removed its reply_url.
var errNoReplyURL = errors.New("webhook: the enterprise has no reply_url any more")

// deliverReplies POSTs replies rps (one, or a ReplyBatch of them when
// batched) and records the outcome: a delivery of them all through the
// acker (handed), else each reply's own retry or give-up here. A POST
// under way is finished even if the sender is stopping, as a receipt's is.
func (s *Sender) deliverReplies(ctx context.Context, rps []queue.Reply, batched bool, acks chan<- queue.Reply) (handed bool) {
	wctx := context.WithoutCancel(ctx)
	e := rps[0].Enterprise
	url := rps[0].MO.ReplyURL
	if s.cfg.ReplyURL != nil {
		url = s.cfg.ReplyURL(e)
	}
	var err error
	if url == "" {
		err = errNoReplyURL
	} else {
		var body []byte
		var status int
		start := time.Now()
		if batched {
			b := ReplyBatch{Replies: make([]Reply, len(rps))}
			for i, rp := range rps {
				b.Replies[i] = ReplyOf(rp.MO)
			}
			body, err = json.Marshal(b)
		} else {
			body, err = json.Marshal(ReplyOf(rps[0].MO))
		}
		if err == nil {
			status, _, err = s.postBody(wctx, url, e, EventReply, body)
		}
		if err != nil && ctx.Err() != nil {
			return false // stopping: due again at the next start, no failure counted
		}
		s.posts.add(e, Outcome{At: start, URL: url, Reply: true, Delivered: err == nil, Receipts: len(rps),
			Status: status, Duration: time.Since(start)}, err)
	}
	if err == nil {
		for _, rp := range rps {
			acks <- rp // never blocks for long: the acker drains, and Run closes acks after every POST returned
		}
		return true
	}
	// Each reply of a failed POST backs off on its own attempts, and one
	// past its age (or any, once the enterprise has no reply_url) is
	// given up.
	now := time.Now()
	var giveUp, retry []queue.Reply
	var next []time.Time
	for _, rp := range rps {
		if errors.Is(err, errNoReplyURL) || now.Sub(rp.MO.ReceivedAt) >= s.cfg.MaxAge {
			giveUp = append(giveUp, rp)
			continue
		}
		retry = append(retry, rp)
		next = append(next, now.Add(s.backoff(rp.Attempts)))
	}
	if len(giveUp) > 0 {
		if aerr := s.cfg.Store.AckReplies(wctx, giveUp, now, true); aerr != nil {
			s.log.Error("reply webhook: give up", "enterprise", e, "replies", len(giveUp), "first", giveUp[0].MO.ID, "err", aerr)
		} else {
			s.replies.total.WithLabelValues("gave_up").Add(float64(len(giveUp)))
			for _, rp := range giveUp {
				s.log.Warn("reply webhook given up", "enterprise", e, "id", rp.MO.ID, "attempts", rp.Attempts+1, "err", err)
			}
		}
	}
	if len(retry) > 0 {
		s.replies.total.WithLabelValues("failed").Add(float64(len(retry)))
		if rerr := s.cfg.Store.RetryReplies(wctx, retry, next); rerr != nil {
			// Left where they were: the next full pass posts them again,
			// at most once a Poll while the store cannot write.
			s.log.Error("reply webhook: retry", "enterprise", e, "replies", len(retry), "first", retry[0].MO.ID, "err", rerr)
		}
		s.log.Info("reply webhook failed, will retry", "enterprise", e, "replies", len(retry), "first", retry[0].MO.ID,
			"in", next[0].Sub(now), "err", err)
	}
	return false
}

// replyAcker records delivered replies in the store, as many in one store
// operation as queued while the last one committed, and only then lets
// them leave the in-flight set.
func (s *Sender) replyAcker(ctx context.Context, acks <-chan queue.Reply) {
	batch := make([]queue.Reply, 0, maxAckBatch)
	for rp := range acks {
		batch = append(batch[:0], rp)
	more:
		for len(batch) < cap(batch) {
			select {
			case rp, ok := <-acks:
				if !ok {
					break more
				}
				batch = append(batch, rp)
			default:
				break more
			}
		}
		now := time.Now()
		acked := func(rp queue.Reply) {
			s.replies.total.WithLabelValues("delivered").Inc()
			s.replies.latency.Observe(now.Sub(rp.MO.ReceivedAt).Seconds())
		}
		if err := s.cfg.Store.AckReplies(ctx, batch, now, false); err == nil {
			for _, rp := range batch {
				acked(rp)
			}
		} else {
			// One at a time: one the store cannot record stays due (posted
			// again at the next full pass), not the whole batch.
			for _, rp := range batch {
				if err := s.cfg.Store.AckReplies(ctx, []queue.Reply{rp}, now, false); err != nil {
					s.log.Error("reply webhook: ack", "id", rp.MO.ID, "err", err)
					continue
				}
				acked(rp)
			}
		}
		s.mu.Lock()
		for _, rp := range batch {
			delete(s.replies.inflight, rp.MO.ID)
		}
		s.mu.Unlock()
	}
}
