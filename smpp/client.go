package smpp

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fiorix/go-smpp/smpp/pdu"
	"github.com/fiorix/go-smpp/smpp/pdu/pdufield"
)

// ClientOptions configure one persistent outbound bind.
type ClientOptions struct {
	Addr       string
	SystemID   string
	Password   string
	SystemType string
	Kind       BindKind // default transceiver
	Conn       ConnOptions
	// DialTimeout bounds connect + bind (and a TLS handshake in Dial).
	DialTimeout time.Duration
	// Dial opens the connection; nil dials plain TCP. A *tls.Dialer's
	// DialContext binds over TLS: it returns once the handshake (and the
	// verification of the SMSC's certificate) is done, so a bad
	// certificate is a dial error, retried with the backoff below.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
	// MinBackoff and MaxBackoff bound the reconnect delay, which doubles
	// after each failure, with ±50 % jitter so many binds do not reconnect
	// in step; the jittered delay never exceeds MaxBackoff.
	MinBackoff, MaxBackoff time.Duration
	// Handler receives the SMSC's requests (deliver_sm, data_sm …).
	Handler Handler
	// OnState reports bind up (true) and down (false).
	OnState func(up bool)
	// OnBindLost, if set, is called when the SMSC answers a request
	// ESME_RINVBNDSTS (the session then ends with ErrBindLost), with the
	// time it did: the SMSC may have lost its other sessions too, and a
	// receiver, which sends no request, would not learn it (Rebind).
	OnBindLost func(at time.Time)
	Logger     *slog.Logger
}

// Client keeps one bind to an SMSC up: dial, bind, serve until the
// connection ends, wait, repeat — until Run's context ends, when it
// unbinds. Submit waits for the bind to be up.
//
// A request answered ESME_RINVBNDSTS (submit_sm_resp or generic_nack) on
// a session that is bound says the SMSC no longer has it bound: it
// restarted or failed over behind a TCP connection that stayed up, and
// would refuse every later request the same way. The Client then takes
// the session down at once (Up is false, OnState reports it down), lets
// the requests still out get their answers, unbinds, closes, and binds
// again (Run): the session ends with ErrBindLost.
type Client struct {
	opt ClientOptions
	log *slog.Logger

	mu    sync.Mutex
	conn  *Conn
	ready chan struct{} // closed while conn is up; replaced when it goes down
	// lost is the session being unbound because the SMSC lost its bind
	// (bindLost), until Run is done with it.
	lost *Conn
	// answered: a request on the current session was answered OK. Run
	// binds again ever more slowly after sessions that lost their bind
	// before any was.
	answered atomic.Bool
	// boundAt is when the current session bound (Rebind).
	boundAt time.Time
}

// ErrRebound ends a session that Rebind took down: another session with
// the same SMSC found it had lost its binds.
var ErrRebound = errors.New("smpp: bound again: another session found the SMSC had lost its binds")

// ErrBindLost ends a session (Conn.Err) whose SMSC answered a request
// ESME_RINVBNDSTS: it had lost the session's bound state (SMPP 3.4
// §5.1.3, "Incorrect BIND Status for given command").
var ErrBindLost = errors.New("smpp: the SMSC answered ESME_RINVBNDSTS: it no longer has the session bound")

// NewClient returns a Client; call Run to start it.
func NewClient(opt ClientOptions) *Client {
	if opt.Kind == 0 {
		opt.Kind = BindTransceiver
	}
	if opt.DialTimeout <= 0 {
		opt.DialTimeout = 10 * time.Second
	}
	if opt.MinBackoff <= 0 {
		opt.MinBackoff = 200 * time.Millisecond
	}
	if opt.MaxBackoff <= 0 {
		opt.MaxBackoff = 30 * time.Second
	}
	if opt.Logger == nil {
		opt.Logger = slog.New(slog.DiscardHandler)
	}
	if opt.Conn.EnquireLink == 0 {
		opt.Conn.EnquireLink = 30 * time.Second
	}
	opt.Conn.Logger = opt.Logger
	return &Client{opt: opt, log: opt.Logger.With("addr", opt.Addr), ready: make(chan struct{})}
}

// Run keeps the bind up until ctx ends, then unbinds (bounded by
// DialTimeout) and returns.
func (c *Client) Run(ctx context.Context) {
	backoff := c.opt.MinBackoff
	// lostBackoff is the wait after a session that lost its bind: it
	// doubles while sessions lose theirs before the SMSC answered any
	// request OK (an SMSC that binds us and refuses everything on the
	// bind is not rebound every MinBackoff).
	lostBackoff := c.opt.MinBackoff
	for ctx.Err() == nil {
		conn, err := c.dial(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			wait := min(jitter(backoff), c.opt.MaxBackoff)
			c.log.Warn("upstream bind failed", "err", err, "retry_in", wait.String())
			if !sleepCtx(ctx, wait) {
				return
			}
			backoff = min(backoff*2, c.opt.MaxBackoff)
			continue
		}
		backoff = c.opt.MinBackoff
		c.setConn(conn)
		c.log.Info("upstream bound", "system_id", c.opt.SystemID)
		select {
		case <-conn.Done():
			if !c.isLost(conn) { // else bindLost has said why
				c.log.Warn("upstream connection lost", "err", conn.Err())
			}
		case <-ctx.Done():
			if c.isLost(conn) {
				<-conn.Done() // bindLost is unbinding it, within DialTimeout
				break
			}
			uctx, cancel := context.WithTimeout(context.Background(), c.opt.DialTimeout)
			_ = conn.Unbind(uctx)
			cancel()
		}
		lost, answered := c.isLost(conn), c.answered.Load()
		c.setConn(nil)
		wait := jitter(c.opt.MinBackoff)
		if !lost || answered {
			lostBackoff = c.opt.MinBackoff
		}
		if lost {
			wait = min(jitter(lostBackoff), c.opt.MaxBackoff)
			lostBackoff = min(2*lostBackoff, c.opt.MaxBackoff)
		}
		if ctx.Err() == nil && !sleepCtx(ctx, wait) {
			return
		}
	}
}

func (c *Client) isLost(conn *Conn) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lost == conn
}

// bindLost takes conn down: its SMSC answered a request ESME_RINVBNDSTS.
// No new request goes on it; those out get their answers (the SMSC may
// still answer them, even accept one), then it is unbound and closed, and
// Run binds again.
func (c *Client) bindLost(conn *Conn) {
	if !c.takeDown(conn, ErrBindLost) {
		return
	}
	c.log.Warn("upstream SMSC answered ESME_RINVBNDSTS: it no longer has this bind; unbinding to bind again",
		"system_id", c.opt.SystemID)
	if c.opt.OnBindLost != nil {
		c.opt.OnBindLost(time.Now())
	}
}

// Rebind takes down the session if it bound before t, as bindLost does,
// and Run binds again: for a receiver, which sends no request, when a
// transmitter of the same SMSC found at t that the SMSC had lost its
// bind (it restarted or failed over behind connections that stayed up,
// and may have lost this one too; its enquire_link may still be answered
// OK). It reports whether it took one down.
func (c *Client) Rebind(t time.Time) bool {
	c.mu.Lock()
	conn := c.conn
	before := conn != nil && c.boundAt.Before(t)
	c.mu.Unlock()
	if !before || !c.takeDown(conn, ErrRebound) {
		return false
	}
	c.log.Warn("upstream SMSC lost another session's bind: unbinding this one to bind again", "system_id", c.opt.SystemID)
	return true
}

// takeDown unbinds conn in the background (bounded by DialTimeout), ending
// it with reason, and reports the bind down; false when it was being
// unbound already (an earlier answer, Run's stop or the SMSC).
func (c *Client) takeDown(conn *Conn, reason error) bool {
	if !conn.unbound.CompareAndSwap(false, true) {
		return false
	}
	c.mu.Lock()
	c.lost = conn
	if c.conn == conn {
		c.conn = nil
		c.ready = make(chan struct{})
		if c.opt.OnState != nil {
			c.opt.OnState(false)
		}
	}
	c.mu.Unlock()
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), c.opt.DialTimeout)
		defer cancel()
		_ = conn.unbindWith(ctx, reason)
	}()
	return true
}

func (c *Client) setConn(conn *Conn) {
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case conn != nil:
		c.conn = conn
		c.boundAt = time.Now()
		c.answered.Store(false)
		close(c.ready)
	case c.conn != nil:
		c.conn = nil
		c.ready = make(chan struct{})
	default:
		c.lost = nil
		return // bindLost reported it down
	}
	c.lost = nil
	if c.opt.OnState != nil {
		c.opt.OnState(conn != nil)
	}
}

// Up reports whether the bind is up now: bound, and its connection neither
// ending (Run may not have noticed yet) nor being unbound (Unbind waits
// for the requests out; a new one would only wait for the end).
func (c *Client) Up() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.conn != nil && c.conn.usable()
}

// Conn waits until the bind is up and returns its connection.
func (c *Client) Conn(ctx context.Context) (*Conn, error) {
	for {
		c.mu.Lock()
		conn := c.conn
		var ready <-chan struct{} = c.ready
		c.mu.Unlock()
		if conn != nil && conn.Context().Err() == nil {
			return conn, nil
		}
		if conn != nil {
			// Ending, but Run has not noticed yet (ready is still
			// closed): wait for it to finish instead of spinning.
			ready = conn.Done()
		}
		select {
		case <-ready:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// ErrNotBound: SubmitIfUp found the bind down.
var ErrNotBound = errors.New("smpp: not bound")

// SubmitIfUp sends p on the bind if it is up now, waiting only for a
// window slot; a bind that is down returns ErrNotBound at once, so that
// the caller can use another bind rather than wait for this one, which
// may not come back soon (in a cluster, another node may hold its slot).
func (c *Client) SubmitIfUp(ctx context.Context, p pdu.Body) (pdu.Body, error) {
	c.mu.Lock()
	conn := c.conn
	c.mu.Unlock()
	if conn == nil || !conn.usable() {
		return nil, ErrNotBound
	}
	return c.request(ctx, conn, p)
}

// Submit sends p on the bind, waiting for the bind and a window slot.
func (c *Client) Submit(ctx context.Context, p pdu.Body) (pdu.Body, error) {
	conn, err := c.Conn(ctx)
	if err != nil {
		return nil, err
	}
	return c.request(ctx, conn, p)
}

// request is conn.Request, noting an answer OK and the SMSC's loss of
// the bind (bindLost).
func (c *Client) request(ctx context.Context, conn *Conn, p pdu.Body) (pdu.Body, error) {
	resp, err := conn.Request(ctx, p)
	switch {
	case err == nil:
		if !c.answered.Load() {
			c.answered.Store(true)
		}
	case errors.Is(err, StatusInvalidBindStatus):
		c.bindLost(conn)
	}
	return resp, err
}

func (c *Client) dial(ctx context.Context) (*Conn, error) {
	dctx, cancel := context.WithTimeout(ctx, c.opt.DialTimeout)
	defer cancel()
	dial := c.opt.Dial
	if dial == nil {
		dial = (&net.Dialer{}).DialContext
	}
	nc, err := dial(dctx, "tcp", c.opt.Addr)
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", c.opt.Addr, err)
	}
	conn := NewConn(nc, c.opt.Handler, c.opt.Conn)
	var bind pdu.Body
	switch c.opt.Kind {
	case BindTransmitter:
		bind = pdu.NewBindTransmitter()
	case BindReceiver:
		bind = pdu.NewBindReceiver()
	default:
		bind = pdu.NewBindTransceiver()
	}
	f := bind.Fields()
	_ = f.Set(pdufield.SystemID, c.opt.SystemID)
	_ = f.Set(pdufield.Password, c.opt.Password)
	_ = f.Set(pdufield.SystemType, c.opt.SystemType)
	_ = f.Set(pdufield.InterfaceVersion, uint8(0x34))
	if _, err := conn.Request(dctx, bind); err != nil {
		_ = conn.Close()
		var st pdu.Status
		if errors.As(err, &st) {
			return nil, fmt.Errorf("bind %s as %q: status %#x (%w)", c.opt.Addr, c.opt.SystemID, uint32(st), st)
		}
		return nil, fmt.Errorf("bind %s: %w", c.opt.Addr, err)
	}
	return conn, nil
}

func jitter(d time.Duration) time.Duration {
	return d/2 + rand.N(d+1)
}

// sleepCtx waits d or until ctx ends; false if ctx ended.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// Dial binds once (no reconnect): for tests and tools acting as an ESME.
func Dial(ctx context.Context, opt ClientOptions) (*Conn, error) {
	c := NewClient(opt)
	return c.dial(ctx)
}
