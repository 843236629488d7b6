package webhook

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/qxtd/qxtd/queue"
)

// Receipt is the JSON body POSTed for one message.
type Receipt struct {
	ID          string    `json:"id"`           // our message id, as the send returned it
	State       string    `json:"state"`        // delivered, undeliverable, expired, rejected, unknown, cancelled
	Error       string    `json:"error"`        // the SMSC's error code of the first part not delivered ("000" if none)
	Recipient   string    `json:"recipient"`    // the destination number
	Segments    int       `json:"segments"`     // segments on the air
	Delivered   int       `json:"delivered"`    // of which delivered (billed)
	SubmittedAt time.Time `json:"submitted_at"` // accepted by qxtd
	DoneAt      time.Time `json:"done_at"`      // the final state was reached
}

// Batch is the JSON body of a POST to an enterprise that takes receipts
// in batches (its receipt_batch above 1): up to that many receipts for
// the same URL, at least one.
type Batch struct {
	Receipts []Receipt `json:"receipts"`
}

// MaxBatch is the most receipts one POST carries.
const MaxBatch = 1000

// ReceiptOf builds the receipt of a final message.
func ReceiptOf(m *queue.Message) Receipt {
	id := m.ID
	if m.Group != 0 {
		id = m.Group
	}
	r := Receipt{ID: strconv.FormatUint(id, 10), State: m.State().String(), Error: "000", Recipient: m.Dest,
		SubmittedAt: m.AcceptedAt}
	w := int(max(m.Weight, 1))
	for _, p := range m.Parts {
		r.Segments += w
		if p.State == queue.StateDelivered {
			r.Delivered += w
		} else if r.Error == "000" && p.ErrCode != "" {
			r.Error = p.ErrCode
		}
		if p.DoneAt.After(r.DoneAt) {
			r.DoneAt = p.DoneAt
		}
	}
	return r
}

// The signature headers: the receipt secret's, and for a while after a
// rotation (a day by default: webhooks.secret_overlap) the replaced
// secret's.
const (
	SignatureHeader         = "X-Qxtd-Signature"
	PreviousSignatureHeader = "X-Qxtd-Signature-Previous"
)

// EventHeader says what a POST carries, EventReceipt (a receipt or a batch
// of them, test receipts too) or EventReply (a reply, MO), so that an
// enterprise that gives both the same URL tells them apart without
// looking at the body.
const (
	EventHeader  = "X-Qxtd-Event"
	EventReceipt = "receipt"
	EventReply   = "reply"
)

// Sign returns the X-Qxtd-Signature value of body sent at timestamp ts
// (decimal Unix seconds) under secret: "sha256=" + hex(HMAC-SHA256(secret,
// ts + "." + body)).
func Sign(secret, ts string, body []byte) string {
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write([]byte(ts))
	mac.Write([]byte{'.'})
	mac.Write(body)
	return "sha256=" + hex.EncodeToString(mac.Sum(nil))
}

// Verify reports whether sig is the signature of body at ts under secret
// (constant time). Receivers written in Go may use it as it is.
func Verify(secret, ts string, body []byte, sig string) bool {
	return hmac.Equal([]byte(Sign(secret, ts, body)), []byte(sig))
}

// Config configures a Sender. Store is required.
type Config struct {
	Store *queue.Store
	// Secret returns an enterprise's receipt secret ("" = unsigned).
	Secret func(enterprise string) string
	// Previous returns the secret a rotation replaced while it still
	// signs, into X-Qxtd-Signature-Previous ("" = none). nil: none.
	Previous func(enterprise string) string
	// Batch returns how many receipts one POST to an enterprise may
	// carry (its receipt_batch): 1 or less, one a POST, the body a
	// Receipt; more (up to MaxBatch), the body a Batch of those due at
	// once for the same URL, however few. nil: 1 for every enterprise.
	Batch func(enterprise string) int
	// ReplyBatch returns how many replies one POST to an enterprise may
	// carry (its reply_batch), as Batch does for receipts: 1 or less, the
	// body a Reply; more (up to MaxBatch), a ReplyBatch of those due at
	// once, however few. nil: 1 for every enterprise.
	ReplyBatch func(enterprise string) int
	// ReplyURL returns an enterprise's reply_url as it is now, where its
	// replies are POSTed (replies.go); "" gives its waiting replies up.
	// nil: each reply goes to the URL stored with it.
	ReplyURL func(enterprise string) string
	// Workers bounds the POSTs in flight (default 64), receipts and
	// replies together; PerEnterprise those of one enterprise (default
	// Workers/4, at least 1). A receipt or reply takes its slot for its
	// POST only: the store records deliveries behind it.
	Workers, PerEnterprise int
	// Timeout bounds one POST, connection included (default 10s).
	Timeout time.Duration
	// Backoff is the first retry delay (default 10s), doubled per failed
	// attempt up to MaxBackoff (default 1h).
	Backoff, MaxBackoff time.Duration
	// MaxAge is how long after the message became final a receipt is
	// tried before it is given up (default 24h).
	MaxAge time.Duration
	// AllowPrivate lets receipts go to loopback and private addresses
	// (doc.go, Caveats). Default false.
	AllowPrivate bool
	// Poll is how often the store is read when nothing woke the sender
	// (default 1s): retries come due without a wake.
	Poll time.Duration
	// SaveEvery is how often the last POSTs that changed are saved in
	// Store (default SaveEvery); they are saved when Run ends too.
	SaveEvery  time.Duration
	Registerer prometheus.Registerer
	Logger     *slog.Logger
}

// Sender POSTs stored receipts. Build it with New, give HooksReady to
// the store's OnHookReady, run Run.
type Sender struct {
	cfg    Config
	client *http.Client
	wake   chan struct{}
	log    *slog.Logger

	mu       sync.Mutex
	inflight map[uint64]struct{}
	perEnt   map[string]int
	rr       int
	// due holds the enterprises that may have a receipt due now. A pass
	// (one per POST that ends, and per commit that queues receipts) reads
	// only those: before, it read every enterprise with any receipt
	// pending, one read transaction each, so receipts waiting out a retry
	// backoff at a thousand enterprises cost every other receipt a
	// millisecond. The full pass every Config.Poll reads them all, which
	// is when a retry that came due is found (as before, within Poll).
	due map[string]struct{}

	// readyMu guards ready: the enterprises the store named since the
	// last pass (HooksReady, on the commit goroutine, which must not wait
	// for mu: a pass holds it across its reads).
	readyMu sync.Mutex
	ready   map[string]struct{}

	scanned atomic.Int64 // enterprises read, for tests
	passes  atomic.Int64 // passes over the enterprises (fill), for tests
	// maxHeld is the most receipts read and not yet done with (in
	// flight: posting, or waiting for the acker), for tests.
	maxHeld atomic.Int64

	total   *prometheus.CounterVec
	latency prometheus.Histogram

	manual manualLimits // test receipts and retry-now (manual.go)

	posts outcomes // each enterprise's last POSTs (outcomes.go)

	replies replyState // reply webhooks (replies.go)
}

// StatusLimit bounds the keys a Status reads: an endpoint dead for a day
// can leave millions of receipts, and anyone of the enterprise may ask.
const StatusLimit = 10_000

// Status is how an enterprise's pushed receipts stand on this node: what
// waits in its store (counted up to StatusLimit) and its last RecentPosts
// POSTs, newest first (outcomes.go).
type Status struct {
	queue.HookSummary
	Recent []Outcome
}

// Status returns enterprise's Status on this node.
func (s *Sender) Status(enterprise string) (Status, error) {
	sum, err := s.cfg.Store.HookSummary(enterprise, StatusLimit)
	if err != nil {
		return Status{}, fmt.Errorf("webhook: status of %s: %w", enterprise, err)
	}
	return Status{HookSummary: sum, Recent: s.posts.recent(enterprise, false)}, nil
}

// ReplyStatus returns how enterprise's pushed replies stand on this node,
// as Status does its receipts: the reply webhooks waiting in its store
// (counted up to StatusLimit) and its last POSTs of replies.
func (s *Sender) ReplyStatus(enterprise string) (Status, error) {
	sum, err := s.cfg.Store.ReplySummary(enterprise, StatusLimit)
	if err != nil {
		return Status{}, fmt.Errorf("webhook: reply status of %s: %w", enterprise, err)
	}
	return Status{HookSummary: sum, Recent: s.posts.recent(enterprise, true)}, nil
}

// ErrRefusedAddress is the dial error for an address that Config.AllowPrivate
// would have to allow.
var ErrRefusedAddress = errors.New("webhook: address refused (loopback, private or link-local; see webhooks.allow_private)")

// New builds a Sender and registers its metrics.
func New(cfg Config) (*Sender, error) {
	if cfg.Store == nil {
		return nil, errors.New("webhook: no store")
	}
	if cfg.Workers <= 0 {
		cfg.Workers = 64
	}
	if cfg.PerEnterprise <= 0 {
		cfg.PerEnterprise = max(cfg.Workers/4, 1)
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 10 * time.Second
	}
	if cfg.Backoff <= 0 {
		cfg.Backoff = 10 * time.Second
	}
	if cfg.MaxBackoff <= 0 {
		cfg.MaxBackoff = time.Hour
	}
	if cfg.MaxAge <= 0 {
		cfg.MaxAge = 24 * time.Hour
	}
	if cfg.Poll <= 0 {
		cfg.Poll = time.Second
	}
	if cfg.SaveEvery <= 0 {
		cfg.SaveEvery = SaveEvery
	}
	if cfg.Previous == nil {
		cfg.Previous = func(string) string { return "" }
	}
	if cfg.Secret == nil {
		cfg.Secret = func(string) string { return "" }
	}
	if cfg.Batch == nil {
		cfg.Batch = func(string) int { return 1 }
	}
	if cfg.ReplyBatch == nil {
		cfg.ReplyBatch = func(string) int { return 1 }
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	s := &Sender{cfg: cfg, wake: make(chan struct{}, 1), log: cfg.Logger,
		inflight: make(map[uint64]struct{}), perEnt: make(map[string]int),
		due: make(map[string]struct{}), ready: make(map[string]struct{}),
		manual: manualLimits{sem: make(chan struct{}, testsInFlight), recent: make(map[string][]time.Time)}}
	// What the last run kept: a damaged record costs its enterprise's
	// history, not the start.
	kept, err := cfg.Store.HookPosts()
	if err != nil {
		s.log.Warn("receipt webhook: the last POSTs kept are not all readable", "err", err)
	}
	s.posts.load(kept)
	dialer := &net.Dialer{Timeout: cfg.Timeout, Control: s.control}
	s.client = &http.Client{
		Timeout: cfg.Timeout,
		Transport: &http.Transport{
			Proxy:       nil, // a proxy would hide the address checked
			DialContext: dialer.DialContext,
			// Keep-alive for as many POSTs as may be in flight to one
			// endpoint: with fewer idle connections kept than that,
			// receipts to a busy endpoint each dialled a new connection
			// (a fifth of qxtd's CPU under load, and TIME_WAITs).
			MaxIdleConns:        cfg.Workers,
			MaxIdleConnsPerHost: cfg.PerEnterprise,
			IdleConnTimeout:     30 * time.Second,
		},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	s.total = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "qxtd_receipt_webhooks_total",
		Help: "Receipt webhook POSTs by outcome: delivered (2xx), failed (to be retried), gave_up (past the maximum age)."}, []string{"outcome"})
	for _, o := range []string{"delivered", "failed", "gave_up"} {
		s.total.WithLabelValues(o)
	}
	s.latency = prometheus.NewHistogram(prometheus.HistogramOpts{Name: "qxtd_receipt_webhook_delivery_seconds",
		Help:    "Time from a message's final state to its receipt webhook's 2xx.",
		Buckets: []float64{0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800, 3600, 21600, 86400}})
	replyMetrics := s.initReplies()
	pending := prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "qxtd_receipt_webhook_pending",
		Help: "Receipt webhooks stored and not yet delivered or given up."}, func() float64 {
		n, _ := cfg.Store.HookPending()
		return float64(n)
	})
	if cfg.Registerer != nil {
		for _, c := range append([]prometheus.Collector{s.total, s.latency, pending, failingCollector{oc: &s.posts}}, replyMetrics...) {
			if err := cfg.Registerer.Register(c); err != nil {
				return nil, fmt.Errorf("webhook: metrics: %w", err)
			}
		}
	}
	return s, nil
}

// control refuses connections to loopback, private and link-local
// addresses unless AllowPrivate: it runs after name resolution, on the
// address actually dialled.
func (s *Sender) control(_, address string, _ syscall.RawConn) error {
	if s.cfg.AllowPrivate {
		return nil
	}
	host, _, err := net.SplitHostPort(address)
	if err != nil {
		return err
	}
	ip := net.ParseIP(host)
	if ip == nil || ip.IsLoopback() || ip.IsPrivate() || ip.IsLinkLocalUnicast() || ip.IsLinkLocalMulticast() ||
		ip.IsUnspecified() || ip.IsMulticast() || ip.IsInterfaceLocalMulticast() {
		return fmt.Errorf("%w: %s", ErrRefusedAddress, host)
	}
	return nil
}

// Wake makes the sender pass over the enterprises with receipts due. It
// never blocks.
func (s *Sender) Wake() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// HooksReady tells the sender that receipts of enterprises were queued.
// It never blocks for long: give it to queue.Options.OnHookReady.
func (s *Sender) HooksReady(enterprises []string) {
	s.readyMu.Lock()
	for _, e := range enterprises {
		s.ready[e] = struct{}{}
	}
	s.readyMu.Unlock()
	s.Wake()
}

// Run sends receipts and replies until ctx ends, then waits for the POSTs
// in flight and for the store to record the ones that were delivered, and
// saves the last POSTs.
func (s *Sender) Run(ctx context.Context) {
	sem := make(chan struct{}, s.cfg.Workers)
	acks := make(chan took, s.cfg.Workers)
	replyAcks := make(chan queue.Reply, s.cfg.Workers)
	ackerDone, saverDone := make(chan struct{}), make(chan struct{})
	replyAckerDone, repliesDone := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(ackerDone)
		s.acker(context.WithoutCancel(ctx), acks)
	}()
	go func() {
		defer close(replyAckerDone)
		s.replyAcker(context.WithoutCancel(ctx), replyAcks)
	}()
	go func() {
		defer close(saverDone)
		s.saver(ctx)
	}()
	var wg sync.WaitGroup
	go func() {
		defer close(repliesDone)
		s.runReplies(ctx, sem, replyAcks, &wg)
	}()
	defer func() {
		<-repliesDone // starts no POST after this: wg.Wait below sees every one
		wg.Wait()
		close(acks)
		close(replyAcks)
		<-ackerDone
		<-replyAckerDone
		<-saverDone
		s.savePosts(context.WithoutCancel(ctx))
	}()
	t := time.NewTimer(0)
	defer t.Stop()
	var lastFull time.Time // the first pass is a full one
	for {
		// A full pass every Poll whatever wakes the loop: under steady
		// receipts the wakes never leave the timer time to fire, and the
		// full pass is where retries that came due are found.
		full := time.Since(lastFull) >= s.cfg.Poll
		if full {
			lastFull = time.Now()
		}
		s.fill(ctx, full, sem, acks, &wg)
		s.passes.Add(1)
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
		case <-s.wake:
		case <-t.C:
		}
	}
}

// took is the receipts of a POST its endpoint took (2xx), for the acker.
type took struct {
	hs      []queue.Hook
	latency []time.Duration // each message's final state → the 2xx
}

// maxRead bounds the receipts of an enterprise one pass reads when its
// POSTs carry batches (each a copy of its message).
const maxRead = 4096

// maxAckBatch bounds the receipts one acknowledgement carries to the
// store: a POST's receipts are never split, so it may carry a few more.
const maxAckBatch = 1024

// acker records delivered receipts in the store, as many in one store
// operation as queued while the last one committed, and only then lets
// them leave the in-flight set (until then a rescan must not POST them
// again). A worker's slot is free once its POST is answered: with the
// commit in the slot too, an enterprise's share of workers would spend
// most of its time waiting for the disk, not for its endpoint.
func (s *Sender) acker(ctx context.Context, acks <-chan took) {
	batch := make([]took, 0, 256)
	hooks := make([]queue.Hook, 0, maxAckBatch)
	for p := range acks {
		batch = append(batch[:0], p)
		n := len(p.hs)
	more:
		for len(batch) < cap(batch) && n < maxAckBatch {
			select {
			case p, ok := <-acks:
				if !ok {
					break more
				}
				batch = append(batch, p)
				n += len(p.hs)
			default:
				break more
			}
		}
		hooks = hooks[:0]
		for _, p := range batch {
			hooks = append(hooks, p.hs...)
		}
		acked := func(latency time.Duration) {
			s.total.WithLabelValues("delivered").Inc()
			s.latency.Observe(latency.Seconds())
		}
		if err := s.cfg.Store.AckHooks(ctx, hooks); err == nil {
			for _, p := range batch {
				for _, l := range p.latency {
					acked(l)
				}
			}
		} else {
			// One at a time, so that a receipt the store cannot record
			// (its message damaged, say) does not keep the others of its
			// batch due; those that fail stay due and are posted again
			// (at-least-once) at the next full pass: at most once a Poll
			// while the store cannot write, not in a loop.
			for _, p := range batch {
				for i, h := range p.hs {
					if err := s.cfg.Store.AckHook(ctx, h); err != nil {
						s.log.Error("receipt webhook: ack", "id", h.Msg.ID, "err", err)
						continue
					}
					acked(p.latency[i])
				}
			}
		}
		s.mu.Lock()
		for _, h := range hooks {
			delete(s.inflight, h.Msg.ID)
		}
		s.mu.Unlock()
	}
}

// fill starts POSTs for due receipts, round robin over the enterprises
// that have some (every one with a receipt pending in a full pass, else
// those of Sender.due), within the worker and per-enterprise bounds: a
// POST takes one worker however many receipts it carries (Config.Batch).
func (s *Sender) fill(ctx context.Context, full bool, sem chan struct{}, acks chan<- took, wg *sync.WaitGroup) {
	var listed []string
	if full {
		var err error
		if listed, err = s.cfg.Store.HookEnterprises(); err != nil {
			s.log.Error("receipt webhooks: list", "err", err)
			return
		}
	}
	s.readyMu.Lock()
	ready := s.ready
	s.ready = make(map[string]struct{}, len(ready))
	s.readyMu.Unlock()
	now := time.Now()
	s.mu.Lock()
	if full {
		clear(s.due)
		for _, e := range listed {
			s.due[e] = struct{}{}
		}
	}
	for e := range ready {
		s.due[e] = struct{}{}
	}
	ents := make([]string, 0, len(s.due))
	for e := range s.due {
		ents = append(ents, e)
	}
	if len(ents) == 0 {
		s.mu.Unlock()
		return
	}
	slices.Sort(ents)
	s.rr++
	start := s.rr % len(ents)
	s.mu.Unlock()
	for i := range ents {
		e := ents[(start+i)%len(ents)]
		free := cap(sem) - len(sem)
		if free <= 0 {
			return
		}
		s.mu.Lock()
		room := min(s.cfg.PerEnterprise-s.perEnt[e], free)
		s.mu.Unlock()
		if room <= 0 {
			continue
		}
		// s.mu is held across the scan, as the dispatcher and the receipt
		// forwarder hold theirs: the scan reads a snapshot, and a receipt
		// whose outcome is committed meanwhile must not leave the in-flight
		// set before the scan is over, or the snapshot, older than that
		// commit, shows it due and it is posted again.
		batch := min(max(s.cfg.Batch(e), 1), MaxBatch)
		s.mu.Lock()
		s.scanned.Add(1)
		// The read ends at the receipt that would need a POST beyond
		// room (receipts for many URLs go a POST each, batch or not),
		// and at maxRead receipts: with a large batch it would hold room
		// × batch messages in memory at once.
		var take func(queue.Hook) bool // nil: a receipt a POST, room of them
		if batch > 1 {
			filled, npost := make(map[string]int), 0
			take = func(h queue.Hook) bool {
				n := filled[h.Msg.ReceiptURL]
				if n%batch == 0 { // the URL's POST is full, or it has none
					if npost == room {
						return false
					}
					npost++
				}
				filled[h.Msg.ReceiptURL] = n + 1
				return true
			}
		}
		hs, next, err := s.cfg.Store.DueHooksWhile(e, now, min(room*batch, max(room, maxRead)), func(id uint64) bool {
			_, busy := s.inflight[id]
			return busy
		}, take)
		posts := group(hs, batch)
		for _, p := range posts {
			for _, h := range p {
				s.inflight[h.Msg.ID] = struct{}{}
			}
		}
		if n := int64(len(s.inflight)); n > s.maxHeld.Load() {
			s.maxHeld.Store(n) // only fill stores it, under s.mu
		}
		if err == nil && !next.Equal(now) {
			// Nothing else due now (the limit did not end the read):
			// left alone until a commit names it or the next full pass.
			delete(s.due, e)
		}
		s.mu.Unlock()
		if err != nil {
			s.log.Error("receipt webhooks: due", "enterprise", e, "err", err)
			continue
		}
		for _, p := range posts {
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
				return
			}
			if ctx.Err() != nil { // both were ready: start no POST once stopping
				<-sem
				return
			}
			s.mu.Lock()
			s.perEnt[e]++
			s.mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				handed := s.deliver(ctx, p, batch > 1, acks)
				s.mu.Lock()
				if !handed { // else the acker ends it
					for _, h := range p {
						delete(s.inflight, h.Msg.ID)
					}
				}
				if s.perEnt[e]--; s.perEnt[e] <= 0 {
					delete(s.perEnt, e)
				}
				s.mu.Unlock()
				<-sem
				s.Wake()
				s.wakeReplies() // the slot, and the enterprise's room, may be a reply's to take
			}()
		}
	}
}

// group splits the due receipts hs into POSTs: those for the same URL
// together, at most batch a POST, in the order of each URL's first.
func group(hs []queue.Hook, batch int) [][]queue.Hook {
	if batch <= 1 {
		posts := make([][]queue.Hook, len(hs))
		for i := range hs {
			posts[i] = hs[i : i+1 : i+1]
		}
		return posts
	}
	var posts [][]queue.Hook
	open := make(map[string]int) // URL → its POST still filling
	for _, h := range hs {
		i, ok := open[h.Msg.ReceiptURL]
		if !ok || len(posts[i]) == batch {
			i = len(posts)
			posts = append(posts, make([]queue.Hook, 0, min(batch, len(hs))))
			open[h.Msg.ReceiptURL] = i
		}
		posts[i] = append(posts[i], h)
	}
	return posts
}

// deliver POSTs receipts hs (one, or a Batch of them when batched: the
// same URL) and records the outcome in the store: a delivery through the
// acker (handed is true: they leave the in-flight set there), a retry or
// a give-up of each here. A retry or give-up the store cannot record (a
// full disk) leaves the receipt due where it was: the next full pass
// (every Poll) posts it again, so that while the store cannot write each
// such receipt goes out at most once a Poll, not in a loop.
func (s *Sender) deliver(ctx context.Context, hs []queue.Hook, batched bool, acks chan<- took) (handed bool) {
	rcs := make([]Receipt, len(hs))
	for i, h := range hs {
		rcs[i] = ReceiptOf(h.Msg)
	}
	// A POST under way is finished even if the sender is stopping (at
	// most Timeout), and a 2xx recorded: cut off, the endpoint may have
	// taken it, and it would be posted again after the restart.
	wctx := context.WithoutCancel(ctx)
	start := time.Now()
	status, err := s.post(wctx, hs[0], rcs, batched)
	if err != nil && ctx.Err() != nil {
		return false // stopping: the receipts stay due for the next start, no failure counted
	}
	s.posts.add(hs[0].Enterprise, Outcome{At: start, URL: hs[0].Msg.ReceiptURL, Receipts: len(hs), Delivered: err == nil,
		Status: status, Duration: time.Since(start)}, err)
	if err == nil {
		// Never blocks for long: the acker drains in batches, and Run
		// closes acks only after every delivery returned.
		t := took{hs: hs, latency: make([]time.Duration, len(rcs))}
		for i, rc := range rcs {
			t.latency[i] = time.Since(rc.DoneAt)
		}
		acks <- t
		return true
	}
	s.failed(wctx, hs, rcs, time.Now(), err)
	return false
}

// failed records that the POST of receipts hs failed with err at now:
// those past MaxAge given up, the others due again after each one's
// backoff, each in one store operation and one log line, however many
// the POST carried.
func (s *Sender) failed(ctx context.Context, hs []queue.Hook, rcs []Receipt, now time.Time, err error) {
	var giveUp, retry []queue.Hook
	var next []time.Time
	for i, h := range hs {
		if now.Sub(rcs[i].DoneAt) >= s.cfg.MaxAge {
			giveUp = append(giveUp, h)
			continue
		}
		retry = append(retry, h)
		next = append(next, now.Add(s.backoff(h.Attempts)))
	}
	if len(giveUp) > 0 {
		h := giveUp[0]
		if aerr := s.cfg.Store.AckHooks(ctx, giveUp); aerr != nil {
			s.log.Error("receipt webhook: give up", "id", h.Msg.ID, "receipts", len(giveUp), "err", aerr)
		} else {
			s.total.WithLabelValues("gave_up").Add(float64(len(giveUp)))
			s.log.Warn("receipt webhook given up", "enterprise", h.Enterprise, "id", h.Msg.ID, "receipts", len(giveUp), "attempts", h.Attempts+1, "err", err)
		}
	}
	if len(retry) > 0 {
		h := retry[0]
		s.total.WithLabelValues("failed").Add(float64(len(retry)))
		if rerr := s.cfg.Store.RetryHooks(ctx, retry, next); rerr != nil {
			s.log.Error("receipt webhook: retry", "id", h.Msg.ID, "receipts", len(retry), "err", rerr)
		}
		s.log.Info("receipt webhook failed, will retry", "enterprise", h.Enterprise, "id", h.Msg.ID, "receipts", len(retry), "in", next[0].Sub(now), "err", err)
	}
}

// backoff is the wait before the next POST of a receipt whose POSTs
// failed attempts times before this one failed.
func (s *Sender) backoff(attempts int) time.Duration {
	d := s.cfg.Backoff
	for i := 0; i < attempts && d < s.cfg.MaxBackoff; i++ {
		d *= 2
	}
	return min(d, s.cfg.MaxBackoff)
}

// errStatus is a non-2xx answer.
type errStatus int

func (e errStatus) Error() string { return "webhook: HTTP status " + strconv.Itoa(int(e)) }

// post POSTs rcs to h's URL, signed with h's enterprise's secret: a
// Batch when batched, else rcs[0] alone.
func (s *Sender) post(ctx context.Context, h queue.Hook, rcs []Receipt, batched bool) (status int, err error) {
	var body []byte
	if batched {
		body, err = json.Marshal(Batch{Receipts: rcs})
	} else {
		body, err = json.Marshal(rcs[0])
	}
	if err != nil {
		return 0, err
	}
	status, _, err = s.postBody(ctx, h.Msg.ReceiptURL, h.Enterprise, EventReceipt, body)
	return status, err
}

// postBody POSTs body to url, signed with enterprise's secret if it has
// one (signed), within Config.Timeout; status is the answer's, 0 if none
// came. A status other than 2xx is an errStatus.
func (s *Sender) postBody(ctx context.Context, url, enterprise, event string, body []byte) (status int, signed bool, err error) {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return 0, false, err
	}
	ts := strconv.FormatInt(time.Now().Unix(), 10)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "qxtd-webhooks")
	req.Header.Set(EventHeader, event)
	req.Header.Set("X-Qxtd-Timestamp", ts)
	if secret := s.cfg.Secret(enterprise); secret != "" {
		req.Header.Set(SignatureHeader, Sign(secret, ts, body))
		signed = true
		if prev := s.cfg.Previous(enterprise); prev != "" {
			req.Header.Set(PreviousSignatureHeader, Sign(prev, ts, body))
		}
	}
	resp, err := s.client.Do(req)
	if err != nil {
		return 0, signed, err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return resp.StatusCode, signed, errStatus(resp.StatusCode)
	}
	return resp.StatusCode, signed, nil
}
