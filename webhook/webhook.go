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
	// Workers bounds the POSTs in flight (default 64); PerEnterprise those
	// of one enterprise (default Workers/4, at least 1). A receipt takes
	// its slot for its POST only: the store records deliveries behind it.
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
	Poll       time.Duration
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

	total   *prometheus.CounterVec
	latency prometheus.Histogram
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
	if cfg.Secret == nil {
		cfg.Secret = func(string) string { return "" }
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	s := &Sender{cfg: cfg, wake: make(chan struct{}, 1), log: cfg.Logger,
		inflight: make(map[uint64]struct{}), perEnt: make(map[string]int),
		due: make(map[string]struct{}), ready: make(map[string]struct{})}
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
	pending := prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "qxtd_receipt_webhook_pending",
		Help: "Receipt webhooks stored and not yet delivered or given up."}, func() float64 {
		n, _ := cfg.Store.HookPending()
		return float64(n)
	})
	if cfg.Registerer != nil {
		for _, c := range []prometheus.Collector{s.total, s.latency, pending} {
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

// Run sends receipts until ctx ends, then waits for the POSTs in flight
// and for the store to record the ones that were delivered.
func (s *Sender) Run(ctx context.Context) {
	sem := make(chan struct{}, s.cfg.Workers)
	acks := make(chan took, s.cfg.Workers)
	ackerDone := make(chan struct{})
	go func() {
		defer close(ackerDone)
		s.acker(context.WithoutCancel(ctx), acks)
	}()
	var wg sync.WaitGroup
	defer func() {
		wg.Wait()
		close(acks)
		<-ackerDone
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

// took is a receipt its endpoint took (2xx), for the acker.
type took struct {
	h       queue.Hook
	latency time.Duration // the message's final state → the 2xx
}

// acker records delivered receipts in the store, as many in one store
// operation as queued while the last one committed, and only then lets
// them leave the in-flight set (until then a rescan must not POST them
// again). A worker's slot is free once its POST is answered: with the
// commit in the slot too, an enterprise's share of workers would spend
// most of its time waiting for the disk, not for its endpoint.
func (s *Sender) acker(ctx context.Context, acks <-chan took) {
	batch := make([]took, 0, 256)
	hooks := make([]queue.Hook, 0, 256)
	for p := range acks {
		batch = append(batch[:0], p)
	more:
		for len(batch) < cap(batch) {
			select {
			case p, ok := <-acks:
				if !ok {
					break more
				}
				batch = append(batch, p)
			default:
				break more
			}
		}
		hooks = hooks[:0]
		for _, p := range batch {
			hooks = append(hooks, p.h)
		}
		acked := func(p took) {
			s.total.WithLabelValues("delivered").Inc()
			s.latency.Observe(p.latency.Seconds())
		}
		if err := s.cfg.Store.AckHooks(ctx, hooks); err == nil {
			for _, p := range batch {
				acked(p)
			}
		} else {
			// One at a time, so that a receipt the store cannot record
			// (its message damaged, say) does not keep the others of its
			// batch due; those that fail stay due and are posted again
			// (at-least-once) at the next full pass: at most once a Poll
			// while the store cannot write, not in a loop.
			for _, p := range batch {
				if err := s.cfg.Store.AckHook(ctx, p.h); err != nil {
					s.log.Error("receipt webhook: ack", "id", p.h.Msg.ID, "err", err)
					continue
				}
				acked(p)
			}
		}
		s.mu.Lock()
		for _, p := range batch {
			delete(s.inflight, p.h.Msg.ID)
		}
		s.mu.Unlock()
	}
}

// fill starts POSTs for due receipts, round robin over the enterprises
// that have some (every one with a receipt pending in a full pass, else
// those of Sender.due), within the worker and per-enterprise bounds.
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
		s.mu.Lock()
		s.scanned.Add(1)
		hs, next, err := s.cfg.Store.DueHooksNext(e, now, room, func(id uint64) bool {
			_, busy := s.inflight[id]
			return busy
		})
		for _, h := range hs {
			s.inflight[h.Msg.ID] = struct{}{}
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
		for _, h := range hs {
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
				handed := s.deliver(ctx, h, acks)
				s.mu.Lock()
				if !handed { // else the acker ends it
					delete(s.inflight, h.Msg.ID)
				}
				if s.perEnt[e]--; s.perEnt[e] <= 0 {
					delete(s.perEnt, e)
				}
				s.mu.Unlock()
				<-sem
				s.Wake()
			}()
		}
	}
}

// deliver POSTs one receipt and records the outcome in the store: a
// delivery through the acker (handed is true: it leaves the in-flight set
// there), a retry or a give-up here. A retry or give-up the store cannot
// record (a full disk) leaves the receipt due where it was: the next full
// pass (every Poll) posts it again, so that while the store cannot write
// each such receipt goes out at most once a Poll, not in a loop.
func (s *Sender) deliver(ctx context.Context, h queue.Hook, acks chan<- took) (handed bool) {
	rc := ReceiptOf(h.Msg)
	// A POST under way is finished even if the sender is stopping (at
	// most Timeout), and a 2xx recorded: cut off, the endpoint may have
	// taken it, and it would be posted again after the restart.
	wctx := context.WithoutCancel(ctx)
	err := s.post(wctx, h, rc)
	if err != nil && ctx.Err() != nil {
		return false // stopping: the receipt stays due for the next start, no failure counted
	}
	if err == nil {
		// Never blocks for long: the acker drains in batches, and Run
		// closes acks only after every delivery returned.
		acks <- took{h: h, latency: time.Since(rc.DoneAt)}
		return true
	}
	now := time.Now()
	if now.Sub(rc.DoneAt) >= s.cfg.MaxAge {
		if aerr := s.cfg.Store.AckHook(wctx, h); aerr != nil {
			s.log.Error("receipt webhook: give up", "id", h.Msg.ID, "err", aerr)
			return false
		}
		s.total.WithLabelValues("gave_up").Inc()
		s.log.Warn("receipt webhook given up", "enterprise", h.Enterprise, "id", h.Msg.ID, "attempts", h.Attempts+1, "err", err)
		return false
	}
	s.total.WithLabelValues("failed").Inc()
	d := s.cfg.Backoff
	for i := 0; i < h.Attempts && d < s.cfg.MaxBackoff; i++ {
		d *= 2
	}
	d = min(d, s.cfg.MaxBackoff)
	if rerr := s.cfg.Store.RetryHook(wctx, h, now.Add(d)); rerr != nil {
		s.log.Error("receipt webhook: retry", "id", h.Msg.ID, "err", rerr)
	}
	s.log.Info("receipt webhook failed, will retry", "enterprise", h.Enterprise, "id", h.Msg.ID, "in", d, "err", err)
	return false
}

// errStatus is a non-2xx answer.
type errStatus int

func (e errStatus) Error() string { return "webhook: HTTP status " + strconv.Itoa(int(e)) }

func (s *Sender) post(ctx context.Context, h queue.Hook, rc Receipt) error {
	body, err := json.Marshal(rc)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, h.Msg.ReceiptURL, bytes.NewReader(body))
	if err != nil {
		return err
	}
	ts := strconv.FormatInt(time.Now().Unix(), 10)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "qxtd-receipts")
	req.Header.Set("X-Qxtd-Timestamp", ts)
	if secret := s.cfg.Secret(h.Enterprise); secret != "" {
		req.Header.Set("X-Qxtd-Signature", Sign(secret, ts, body))
	}
	resp, err := s.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return errStatus(resp.StatusCode)
	}
	return nil
}
