package smpp

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"runtime"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fiorix/go-smpp/smpp/pdu"
)

// Handler answers the requests a peer sends on a Conn. It is called on one
// of the Conn's handler workers (at most ConnOptions.InboundWindow requests
// at once), so a slow request does not hold up the others: SMPP is windowed.
// The returned PDU is the response; its sequence number is set by the Conn.
// A nil response sends nothing. enquire_link and unbind never reach the
// Handler: the Conn answers them itself.
type Handler interface {
	HandlePDU(ctx context.Context, c *Conn, p pdu.Body) pdu.Body
}

// HandlerFunc adapts a function to Handler.
type HandlerFunc func(ctx context.Context, c *Conn, p pdu.Body) pdu.Body

// HandlePDU implements Handler.
func (f HandlerFunc) HandlePDU(ctx context.Context, c *Conn, p pdu.Body) pdu.Body {
	return f(ctx, c, p)
}

var _ Handler = HandlerFunc(nil)

// ConnOptions tune one SMPP session. Zero values take the defaults below.
type ConnOptions struct {
	// Window is the number of our requests that may await a response at
	// once. Request waits (it does not fail) while the window is full.
	Window int
	// InboundWindow bounds the peer's requests handled concurrently; when
	// it is full the reader stops reading and TCP pushes back.
	InboundWindow int
	// RespTimeout is how long Request waits for a response. The request
	// is remembered after that: a late response goes to OnLateResponse.
	RespTimeout time.Duration
	// EnquireLink is the keepalive interval; 0 disables it.
	EnquireLink time.Duration
	// IdleTimeout closes the session when nothing at all arrives for
	// that long (not even enquire_link); 0 disables it.
	IdleTimeout time.Duration
	// WriteQueue bounds the frames waiting for the writer goroutine.
	WriteQueue int
	// OnLateResponse receives a response that arrived after its Request
	// gave up with ErrTimeout. It runs on the reader goroutine: keep it short.
	OnLateResponse func(req, resp pdu.Body)
	// OnClose is called once, after both goroutines stopped.
	OnClose func(c *Conn, err error)
	Logger  *slog.Logger
}

func (o *ConnOptions) defaults() {
	if o.Window <= 0 {
		o.Window = 10
	}
	if o.InboundWindow <= 0 {
		o.InboundWindow = 64
	}
	if o.RespTimeout <= 0 {
		o.RespTimeout = 10 * time.Second
	}
	if o.WriteQueue <= 0 {
		o.WriteQueue = 256
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
}

// Errors a Request can return, besides a pdu.Status from the peer.
var (
	ErrClosed  = errors.New("smpp: connection closed")
	ErrTimeout = errors.New("smpp: response timeout")
	// ErrUnsent is ErrClosed (errors.Is) before the request was handed to
	// the writer, waiting for a window slot or for room in the write
	// queue: the peer never saw it, so the caller may send it elsewhere
	// at once. After ErrClosed alone it may have been written.
	ErrUnsent = fmt.Errorf("%w before the request was sent", ErrClosed)
)

// maxLatePending bounds how many timed-out requests are remembered per
// window slot before the peer is considered broken and the session reset.
const maxLatePending = 4

type outFrame struct {
	b          []byte
	closeAfter bool
}

type call struct {
	req      pdu.Body
	done     chan pdu.Body // buffered 1
	timer    *time.Timer   // the response timeout, stopped between uses
	timedOut atomic.Bool
}

// Conn is one SMPP session over one TCP connection, either direction.
// One reader goroutine decodes frames and routes responses to waiting
// requests by sequence number; one writer goroutine drains a bounded
// channel of encoded frames. Both stop when the Conn closes, and Close
// waits for them and for the handlers in flight.
type Conn struct {
	nc      net.Conn
	opt     ConnOptions
	handler Handler
	log     *slog.Logger

	ctx    context.Context
	cancel context.CancelFunc

	seq    atomic.Uint32
	window chan struct{}
	inbox  chan struct{} // inbound handler slots
	// work carries inbound requests to the handler workers: long-lived
	// goroutines, started as the load needs them up to the inbound window
	// (one goroutine per request would grow a fresh stack each time).
	work chan pdu.Body
	// Each request queued on work is someone's: an idle worker's (idle,
	// claimed by the read loop as it queues), a worker's started for it,
	// or, with every worker busy and no more allowed, the first worker
	// to free (owed). Counted under workMu so that the read loop never
	// takes a worker that has just taken a request for an idle one: it
	// did, and a request waited out another's handler (a store commit).
	workMu  sync.Mutex
	idle    int // workers waiting, for whom no request is queued
	owed    int // queued requests no worker is waiting for
	nworker int // workers started
	// refusing: the session is being unbound by us (unbindWith) and the
	// window has drained; a request read now is refused, and no handler
	// starts after unbindWith has begun to wait for them.
	refusing bool
	// inPeak is the most inbound requests the peer has had awaiting our
	// answer at once on this session (PeerHasRoom).
	inPeak  atomic.Int32
	workers sync.WaitGroup

	mu      sync.Mutex
	pending map[uint32]*call
	// calls keeps the calls whose answer exchange received (then neither
	// the reader nor finish holds them any more): a call, its channel and
	// its timer are four allocations, and every message relayed is one.
	calls sync.Pool
	late  int

	out    chan outFrame
	closed chan struct{}
	errMu  sync.Mutex
	err    error
	// endedAt is when the session ended (closeWith), under errMu;
	// unbindDone: it ended with an unbind answered (Ended).
	endedAt    time.Time
	unbindDone atomic.Bool
	// unbindClean: our unbind under way ends the session cleanly (its
	// reason io.EOF): its answer sets unbindDone.
	unbindClean atomic.Bool

	handlers sync.WaitGroup
	loops    sync.WaitGroup
	once     sync.Once
	unbound  atomic.Bool

	// sent, when set (tests), runs in Request once its frame is queued
	// for the writer, before it waits for the answer.
	sent func()

	// Value is free for the owner of the Conn (the server keeps the bound
	// session here).
	Value atomic.Value
}

// NewConn starts a session on nc. h may be nil for a client that expects
// no requests (every request then gets generic_nack).
func NewConn(nc net.Conn, h Handler, opt ConnOptions) *Conn {
	opt.defaults()
	ctx, cancel := context.WithCancel(context.Background())
	c := &Conn{
		nc:      nc,
		opt:     opt,
		handler: h,
		log:     opt.Logger.With("remote", nc.RemoteAddr().String()),
		ctx:     ctx,
		cancel:  cancel,
		window:  make(chan struct{}, opt.Window),
		inbox:   make(chan struct{}, opt.InboundWindow),
		work:    make(chan pdu.Body, opt.InboundWindow),
		pending: make(map[uint32]*call),
		out:     make(chan outFrame, opt.WriteQueue),
		closed:  make(chan struct{}),
	}
	// Every loop is counted before any starts: the reader can fail at
	// once (the peer closed) and finish then waits on loops, which must
	// not grow after that.
	loops := 2
	if opt.EnquireLink > 0 {
		loops++
	}
	c.loops.Add(loops)
	go c.readLoop()
	go c.writeLoop()
	if opt.EnquireLink > 0 {
		go c.keepalive()
	}
	return c
}

// Context is cancelled when the session ends.
func (c *Conn) Context() context.Context { return c.ctx }

// Done is closed when the session has ended and its goroutines stopped.
func (c *Conn) Done() <-chan struct{} { return c.closed }

// Err reports why the session ended (nil while it runs; io.EOF for a
// clean close by the peer).
func (c *Conn) Err() error {
	c.errMu.Lock()
	defer c.errMu.Unlock()
	return c.err
}

// Ended reports, once the session has ended (ok), when, and whether it
// ended with an unbind answered: the peer's unbind_resp to ours (Unbind),
// or our unbind_resp to the peer's written out. Every answer to the peer
// went out before either, so unbound says the peer got them all; a
// session cut (a drop, a failure, a close without unbind) may have lost
// the last ones, and an SMSC sends their requests again. So may one a
// Client took down because the SMSC had lost its bind (ErrBindLost,
// ErrRebound), whose unbind is answered or not.
func (c *Conn) Ended() (at time.Time, unbound, ok bool) {
	c.errMu.Lock()
	defer c.errMu.Unlock()
	return c.endedAt, c.unbindDone.Load(), c.err != nil
}

// RemoteAddr is the peer's address.
func (c *Conn) RemoteAddr() net.Addr { return c.nc.RemoteAddr() }

// nextSeq returns the session's next sequence number, in the range the
// spec allows (0x00000001–0x7FFFFFFF), wrapping around.
func (c *Conn) nextSeq() uint32 {
	for {
		s := c.seq.Add(1) & 0x7FFFFFFF
		if s != 0 {
			return s
		}
	}
}

// Request sends p and waits for its response. It waits for a window slot
// first. A response with a non-zero command_status is returned together
// with that pdu.Status as the error. After RespTimeout it returns
// ErrTimeout but keeps the request, so a late answer still reaches
// OnLateResponse instead of being taken for another request's.
func (c *Conn) Request(ctx context.Context, p pdu.Body) (pdu.Body, error) {
	return c.request(ctx, p, nil)
}

// RequestQueued is Request, calling queued once p is in the queue of
// frames to be written, or once Request fails before that: a caller
// that starts its next request only after queued keeps its requests in
// that order on the wire, while their answers are awaited together (a
// window of replies to an ESME, in the order they came). queued is
// called once, on the caller's goroutine, before RequestQueued returns.
func (c *Conn) RequestQueued(ctx context.Context, p pdu.Body, queued func()) (pdu.Body, error) {
	called := false
	once := func() {
		if !called {
			called = true
			queued()
		}
	}
	defer once()
	return c.request(ctx, p, once)
}

// request is Request with the queued callback of RequestQueued (nil:
// none).
func (c *Conn) request(ctx context.Context, p pdu.Body, queued func()) (pdu.Body, error) {
	// A free slot is taken without the three-way select: a select locks
	// every channel in it, and the contexts' Done channels are shared by
	// every request in flight (hundreds of upstream workers).
	select {
	case c.window <- struct{}{}:
	default:
		select {
		case c.window <- struct{}{}:
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-c.ctx.Done():
			return nil, ErrUnsent
		}
	}
	defer func() { <-c.window }()
	if !c.usable() {
		// Closed while this request waited (the slot is one a request
		// failed by the close gave back), or being unbound: Unbind is
		// taking every slot, and a request that took one instead would
		// put it off. Under a steady stream of requests (receipts to an
		// ESME at a stop) it never had the window, and the stop ended
		// the session without unbind after its deadline.
		return nil, ErrUnsent
	}
	return c.exchange(ctx, p, queued)
}

// exchange sends p and waits for its response (Request), its window slot
// already taken; queued (nil: none) is called once p is queued for the
// writer.
func (c *Conn) exchange(ctx context.Context, p pdu.Body, queued func()) (pdu.Body, error) {
	seq := c.nextSeq()
	p.Header().Seq = seq
	frame, err := encode(p)
	if err != nil {
		return nil, err
	}
	cl, _ := c.calls.Get().(*call)
	if cl == nil {
		cl = &call{done: make(chan pdu.Body, 1), timer: time.NewTimer(time.Hour)}
		cl.timer.Stop()
	}
	cl.req = p
	c.mu.Lock()
	c.pending[seq] = cl
	c.mu.Unlock()
	// forget takes the request back; false when the reader (or finish)
	// has taken it already, and its answer is on its way to cl.done.
	forget := func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		_, still := c.pending[seq]
		delete(c.pending, seq)
		return still
	}
	if err := c.send(ctx, frame); err != nil {
		forget()
		if errors.Is(err, ErrClosed) {
			return nil, ErrUnsent // not queued for the writer
		}
		return nil, err
	}
	if queued != nil {
		queued()
	}
	if c.sent != nil {
		c.sent()
	}
	// Timers are synchronous since Go 1.23: once stopped, a timer's
	// channel holds no stale expiry for the call's next use.
	cl.timer.Reset(c.opt.RespTimeout)
	var resp pdu.Body
	select {
	case resp = <-cl.done:
	case <-cl.timer.C:
		if c.markLate(seq, cl) {
			return nil, ErrTimeout // cl stays with the late requests
		}
		resp = <-cl.done // answered meanwhile: the reader is handing it over
	case <-ctx.Done():
		if c.markLate(seq, cl) {
			cl.timer.Stop()
			return nil, ctx.Err()
		}
		resp = <-cl.done
	case <-c.ctx.Done():
		// The session ended, but perhaps only after the answer came: a
		// peer that answers and then closes (unbind_resp, or a
		// submit_sm_resp just before a drop) has answered, and a
		// submit_sm taken for unanswered would be sent again. Both cases
		// may be ready at once here, and select picks either.
		if forget() {
			cl.timer.Stop()
			return nil, ErrClosed
		}
		resp = <-cl.done // the answer, or nil from finish
	}
	// The answer was received: the reader (or finish) took cl out of
	// pending before sending it, and nothing else holds cl.
	cl.timer.Stop()
	cl.req = nil
	c.calls.Put(cl)
	if resp == nil {
		return nil, ErrClosed
	}
	if st := resp.Header().Status; st != 0 {
		return resp, st
	}
	if resp.Header().ID == pdu.GenericNACKID {
		return resp, pdu.Status(0x00000003) // a nack without status: treat as invalid command
	}
	return resp, nil
}

// markLate keeps a request whose caller stopped waiting; false means its
// response was already taken by the reader and is on its way to cl.done.
// Too many late requests means the peer has stopped answering: the
// session is reset.
func (c *Conn) markLate(seq uint32, cl *call) bool {
	c.mu.Lock()
	_, still := c.pending[seq]
	if still {
		cl.timedOut.Store(true) // under mu: deliverResponse decides under mu too
		c.late++
	}
	late := c.late
	tooMany := late > maxLatePending*c.opt.Window
	c.mu.Unlock()
	if tooMany {
		c.fail(fmt.Errorf("smpp: %d requests without response", late))
	}
	return still
}

// Send writes a PDU without waiting for anything (responses, generic_nack).
func (c *Conn) send(ctx context.Context, frame []byte) error {
	select {
	case c.out <- outFrame{b: frame}: // room in the queue: no select over the shared Done channels (Request)
		return nil
	default:
	}
	select {
	case c.out <- outFrame{b: frame}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-c.ctx.Done():
		return ErrClosed
	}
}

func (c *Conn) respond(req *pdu.Header, resp pdu.Body) {
	resp.Header().Seq = req.Seq
	frame, err := encode(resp)
	if err != nil {
		c.log.Error("encode response", "cmd", resp.Header().ID.String(), "err", err)
		return
	}
	_ = c.send(c.ctx, frame)
}

func (c *Conn) nack(seq uint32, st pdu.Status) {
	n := pdu.NewGenericNACK()
	n.Header().Status = st
	n.Header().Seq = seq
	frame, _ := encode(n)
	_ = c.send(c.ctx, frame)
}

// encode writes p's frame: the hot PDUs from their own fields, the
// responses and submit_sm/deliver_sm from go-smpp's maps in one
// allocation (fastenc.go), the rest by go-smpp's codec.
func encode(p pdu.Body) ([]byte, error) {
	if h := p.Header(); h.ID == pdu.SubmitSMRespID && h.Status != StatusOK {
		// SMPP 3.4 §4.4.2: "The submit_sm_resp PDU Body is not returned
		// if the command_status field contains a non-zero value."
		// go-smpp's codec writes an empty message_id (17 octets), which
		// a strict client (osmocom's libsmpp34) cannot read.
		frame := make([]byte, pdu.HeaderLen)
		h.Len = pdu.HeaderLen
		putHeader(frame, h)
		return frame, nil
	}
	if r, ok := p.(rawEncoder); ok {
		if frame, ok := r.rawFrame(); ok {
			return frame, nil
		}
	}
	if frame, ok := encodeResponse(p); ok {
		return frame, nil
	}
	if frame, ok := encodeSM(p); ok {
		return frame, nil
	}
	var b bytes.Buffer
	if err := p.SerializeTo(&b); err != nil {
		return nil, fmt.Errorf("smpp: encode %s: %w", p.Header().ID, err)
	}
	return b.Bytes(), nil
}

// Unbind ends the session politely: it waits until every request out has
// been answered (or has timed out), starting no new one meanwhile (those
// wait, then fail with ErrUnsent), then sends unbind, waits for unbind_resp
// (or ctx) and closes. Unbinding with requests out would leave their fate
// to the peer: an SMSC that drops them unanswered may still deliver them,
// and the sender, taking them for lost, would send them again.
//
// The peer's requests are answered first too: they are served as usual
// while the window drains; then any read is refused ESME_RINVBNDSTS
// without reaching the handler, and the handlers at work finish, their
// answers going out before the unbind. A peer (an ESME) that closes once
// it has sent unbind_resp would otherwise lose the answer of a request
// its handler was still working on (a submit_sm being stored: its
// context ended with the session, and a message stored all the same,
// unanswered, is sent again by an ESME that takes it for lost).
func (c *Conn) Unbind(ctx context.Context) error {
	c.unbound.Store(true)
	return c.unbindWith(ctx, io.EOF)
}

// unbindWith is Unbind once unbound is set (by Unbind, or by a Client
// whose SMSC lost the bind), the session ending with reason (Err).
func (c *Conn) unbindWith(ctx context.Context, reason error) error {
	err := c.drainWindow(ctx)
	if err == nil {
		// The peer's requests are served while the window drains (it
		// does not know yet); from here on they are refused.
		c.workMu.Lock()
		c.refusing = true
		c.workMu.Unlock()
		err = c.waitHandlers(ctx)
	}
	if err == nil {
		// A session the SMSC had lost (a Client's ErrBindLost,
		// ErrRebound) is no clean end, answered or not: what we answered
		// on it while the SMSC did not have it bound may be gone.
		c.unbindClean.Store(reason == io.EOF)
		if _, err = c.exchange(ctx, pdu.NewUnbind(), nil); err == nil && reason == io.EOF {
			c.unbindDone.Store(true)
		}
	}
	c.closeWith(reason)
	<-c.closed
	return err
}

// waitHandlers waits (at most until ctx ends) for the handlers of the
// peer's requests to finish: their answers are then queued for the
// writer, ahead of anything queued later.
func (c *Conn) waitHandlers(ctx context.Context) error {
	done := make(chan struct{})
	go func() {
		c.handlers.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-c.ctx.Done():
		return ErrClosed
	}
}

// usable reports whether requests may still be sent: the session is open
// and neither side has begun to unbind it.
func (c *Conn) usable() bool { return c.ctx.Err() == nil && !c.unbound.Load() }

// drainWindow takes every window slot, each as its request ends, and
// keeps them: no request is out once it returns nil, and none can start.
func (c *Conn) drainWindow(ctx context.Context) error {
	for range cap(c.window) {
		select {
		case c.window <- struct{}{}:
		case <-ctx.Done():
			return ctx.Err()
		case <-c.ctx.Done():
			return ErrClosed
		}
	}
	return nil
}

// Close ends the session at once and waits for its goroutines.
func (c *Conn) Close() error {
	c.closeWith(ErrClosed)
	<-c.closed
	return nil
}

func (c *Conn) fail(err error) {
	c.log.Warn("smpp session failed", "err", err)
	c.closeWith(err)
}

func (c *Conn) closeWith(err error) {
	c.once.Do(func() {
		c.errMu.Lock()
		c.err, c.endedAt = err, time.Now()
		c.errMu.Unlock()
		c.cancel()
		_ = c.nc.Close()
		go c.finish()
	})
}

// finish runs once: it waits for every goroutine of the session, then
// wakes every request still waiting and reports the end.
func (c *Conn) finish() {
	c.loops.Wait()   // the read loop queues no more requests
	c.workers.Wait() // the context is cancelled: workers stop after the request in hand
	c.dropQueued()
	c.handlers.Wait()
	c.mu.Lock()
	for seq, cl := range c.pending {
		delete(c.pending, seq)
		select {
		case cl.done <- nil:
		default:
		}
	}
	c.mu.Unlock()
	if c.opt.OnClose != nil {
		c.opt.OnClose(c, c.Err())
	}
	close(c.closed)
}

func (c *Conn) writeLoop() {
	defer c.loops.Done()
	w := bufio.NewWriterSize(c.nc, 16<<10)
	for {
		select {
		case <-c.ctx.Done():
			return
		case f := <-c.out:
			if _, err := w.Write(f.b); err != nil {
				c.closeWith(fmt.Errorf("smpp: write: %w", err))
				return
			}
			if f.closeAfter {
				if w.Flush() == nil {
					c.unbindDone.Store(true) // our unbind_resp is out
				}
				c.closeWith(io.EOF)
				return
			}
			// Flush only when nothing else is queued: frames written
			// together share one syscall. Before flushing, yield once:
			// under load another goroutine is often about to queue a
			// frame, which then joins this write (a few µs at most).
			if len(c.out) == 0 && w.Buffered() < w.Size()/2 {
				runtime.Gosched()
			}
			if len(c.out) == 0 {
				if err := w.Flush(); err != nil {
					c.closeWith(fmt.Errorf("smpp: write: %w", err))
					return
				}
			}
		}
	}
}

func (c *Conn) readLoop() {
	defer c.loops.Done()
	r := bufio.NewReaderSize(c.nc, 16<<10)
	var armed time.Time // when the read deadline was last moved
	rearm := min(time.Second, c.opt.IdleTimeout/4)
	for {
		// Move the idle deadline at most once per rearm, not per frame,
		// and rearm further: a silent session ends between IdleTimeout
		// and IdleTimeout + rearm after its last frame, never sooner.
		if c.opt.IdleTimeout > 0 {
			if now := time.Now(); now.Sub(armed) >= rearm {
				_ = c.nc.SetReadDeadline(now.Add(c.opt.IdleTimeout + rearm))
				armed = now
			}
		}
		frame, err := ReadFrame(r)
		if err != nil {
			var ne net.Error
			switch {
			case errors.Is(err, io.EOF) || c.ctx.Err() != nil:
				c.closeWith(io.EOF)
			case errors.As(err, &ne) && ne.Timeout():
				c.closeWith(fmt.Errorf("smpp: idle for %s: %w", c.opt.IdleTimeout, err))
			default:
				c.fail(err)
			}
			return
		}
		if !c.dispatch(frame) {
			return
		}
	}
}

// dispatch handles one frame; false ends the read loop.
func (c *Conn) dispatch(frame []byte) bool {
	h := headerOf(frame)
	if h.ID&0x80000000 != 0 {
		c.deliverResponse(h, frame)
		return true
	}
	switch h.ID {
	case pdu.EnquireLinkID:
		c.respond(&h, pdu.NewEnquireLinkResp())
		return true
	case pdu.UnbindID:
		c.unbound.Store(true)
		// Answer what is in flight before saying goodbye: a submit_sm the
		// peer sent before unbind still gets its submit_sm_resp.
		c.handlers.Wait()
		resp := pdu.NewUnbindResp()
		resp.Header().Seq = h.Seq
		frame, _ := encode(resp)
		// The writer closes the session once unbind_resp is on the wire.
		select {
		case c.out <- outFrame{b: frame, closeAfter: true}:
		case <-c.ctx.Done():
		}
		return false
	}
	p, err := Decode(frame)
	if err != nil {
		var unk *UnknownCommandError
		if errors.As(err, &unk) {
			c.nack(h.Seq, StatusInvalidCommandID)
		} else {
			c.log.Info("malformed pdu", "cmd", h.ID.String(), "err", err)
			c.nack(h.Seq, StatusInvalidCommandLen)
		}
		return true
	}
	select {
	case c.inbox <- struct{}{}:
	case <-c.ctx.Done():
		return false
	}
	if n := int32(len(c.inbox)); n > c.inPeak.Load() {
		c.inPeak.Store(n) // the read loop is the only writer
	}
	c.workMu.Lock()
	if c.refusing {
		// Read once we were about to send unbind: refused, not handled.
		c.workMu.Unlock()
		<-c.inbox
		c.respond(&h, errorResponse(p, StatusInvalidBindStatus))
		return true
	}
	c.handlers.Add(1)
	c.work <- p // never blocks: it holds as many as the inbox admits
	start := false
	switch {
	case c.idle > 0:
		c.idle--
	case c.nworker < cap(c.inbox):
		c.nworker++
		start = true
	default:
		c.owed++
	}
	c.workMu.Unlock()
	if start {
		c.workers.Add(1)
		go c.worker()
	}
	return true
}

// PeerHasRoom reports, from a handler, whether the peer has fewer
// requests awaiting our answer (this one included) than the most it ever
// had at once on this session: its window, which SMPP does not announce,
// has room, so it can send more while this answer is delayed. A peer that
// waits for each answer (a window of 1) or whose window is full has none:
// a delay in answering it slows it down by as much.
func (c *Conn) PeerHasRoom() bool {
	return int32(len(c.inbox)) < c.inPeak.Load()
}

// worker handles inbound requests until the session ends. It starts
// with a request queued for it (dispatch), and after each one takes an
// owed request or waits as idle.
func (c *Conn) worker() {
	defer c.workers.Done()
	for {
		select {
		case <-c.ctx.Done():
			return
		case p := <-c.work:
			c.handle(p)
		}
		c.workMu.Lock()
		if c.owed > 0 {
			c.owed--
		} else {
			c.idle++
		}
		c.workMu.Unlock()
	}
}

// dropQueued forgets the requests no worker took before the session
// ended: nobody can be answered any more.
func (c *Conn) dropQueued() {
	for {
		select {
		case <-c.work:
			<-c.inbox
			c.handlers.Done()
		default:
			return
		}
	}
}

func (c *Conn) handle(p pdu.Body) {
	defer c.handlers.Done()
	hdr := *p.Header()
	resp, st := c.run(p)
	// The request's slot is freed before its answer is queued: a peer
	// that waits for each answer must never be seen with two requests
	// out (its next one read before this slot was freed), or PeerHasRoom
	// would take it for one with a window of 2.
	<-c.inbox
	switch {
	case st != 0:
		c.nack(hdr.Seq, st)
	case resp != nil:
		c.respond(&hdr, resp)
		if r, ok := c.handler.(responder); ok {
			r.Responded(hdr)
		}
	}
}

// responder is a Handler that acts once its answer to a request is
// queued (the server: a session starts sending after its bind_resp).
type responder interface {
	Responded(req pdu.Header)
}

// run is the handler's answer to p, or the generic_nack status to send
// instead: no handler, or a panic in it (logged).
func (c *Conn) run(p pdu.Body) (resp pdu.Body, st pdu.Status) {
	if c.handler == nil {
		return nil, StatusInvalidCommandID
	}
	defer func() {
		if r := recover(); r != nil {
			c.log.Error("panic in smpp handler", "cmd", p.Header().ID.String(), "panic", r, "stack", string(debug.Stack()))
			resp, st = nil, StatusSystemError
		}
	}()
	return c.handler.HandlePDU(c.ctx, c, p), 0
}

func (c *Conn) deliverResponse(h pdu.Header, frame []byte) {
	c.mu.Lock()
	cl, ok := c.pending[h.Seq]
	var late bool
	if ok && (h.ID == pdu.GenericNACKID || h.ID == cl.req.Header().ID|0x80000000) {
		delete(c.pending, h.Seq)
		if late = cl.timedOut.Load(); late {
			c.late--
		}
	} else {
		ok = false
	}
	c.mu.Unlock()
	if !ok {
		c.log.Debug("response to no request", "cmd", h.ID.String(), "seq", h.Seq)
		return
	}
	if h.ID == pdu.UnbindRespID && h.Status == 0 && c.unbindClean.Load() {
		// Recorded here, in the read loop, before it can read the peer's
		// close that follows its unbind_resp and end the session: from
		// unbindWith, after the exchange, Ended could report the session
		// cut in between (the end's watchers read it once).
		c.unbindDone.Store(true)
	}
	resp, err := Decode(frame)
	if err != nil {
		// A response we cannot parse still answers the request: keep its
		// status, which is all most callers need.
		resp = pdu.NewGenericNACK()
		*resp.Header() = h
		if h.Status == 0 {
			resp.Header().Status = StatusInvalidCommandLen
		}
	}
	if late {
		if c.opt.OnLateResponse != nil {
			c.opt.OnLateResponse(cl.req, resp)
		}
		return
	}
	cl.done <- resp
}

func (c *Conn) keepalive() {
	defer c.loops.Done()
	t := time.NewTicker(c.opt.EnquireLink)
	defer t.Stop()
	for {
		select {
		case <-c.ctx.Done():
			return
		case <-t.C:
			ctx, cancel := context.WithTimeout(c.ctx, c.opt.RespTimeout)
			_, err := c.Request(ctx, pdu.NewEnquireLink())
			cancel()
			if err != nil && c.ctx.Err() == nil {
				c.fail(fmt.Errorf("smpp: enquire_link: %w", err))
				return
			}
		}
	}
}

func headerOf(frame []byte) pdu.Header {
	return pdu.Header{
		Len:    binary.BigEndian.Uint32(frame[0:4]),
		ID:     pdu.ID(binary.BigEndian.Uint32(frame[4:8])),
		Status: pdu.Status(binary.BigEndian.Uint32(frame[8:12])),
		Seq:    binary.BigEndian.Uint32(frame[12:16]),
	}
}

// ErrFrameLength is a command_length outside 16..MaxFrame: the stream
// cannot be resynchronised, so the session closes.
var ErrFrameLength = errors.New("smpp: bad command_length")

// MaxFrame is the largest PDU accepted (go-smpp's limit).
const MaxFrame = pdu.MaxSize

// ReadFrame reads one whole PDU (header included) from r.
func ReadFrame(r io.Reader) ([]byte, error) {
	var hb [pdu.HeaderLen]byte
	if _, err := io.ReadFull(r, hb[:]); err != nil {
		return nil, err
	}
	n := binary.BigEndian.Uint32(hb[0:4])
	if n < pdu.HeaderLen || n > MaxFrame {
		return nil, fmt.Errorf("%w: %d", ErrFrameLength, n)
	}
	frame := make([]byte, n)
	copy(frame, hb[:])
	if _, err := io.ReadFull(r, frame[pdu.HeaderLen:]); err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return nil, err
	}
	return frame, nil
}
