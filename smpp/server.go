package smpp

import (
	"container/list"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"sync"
	"time"

	"github.com/fiorix/go-smpp/smpp/pdu"
	"github.com/fiorix/go-smpp/smpp/pdu/pdufield"
	"github.com/fiorix/go-smpp/smpp/pdu/pdutlv"

	"github.com/qxtd/qxtd/loglimit"
)

// BindKind is the kind of bind a peer asked for.
type BindKind uint8

// Bind kinds.
const (
	BindTransmitter BindKind = iota + 1
	BindReceiver
	BindTransceiver
)

func (k BindKind) String() string {
	switch k {
	case BindTransmitter:
		return "transmitter"
	case BindReceiver:
		return "receiver"
	case BindTransceiver:
		return "transceiver"
	}
	return "unknown"
}

// CanSend reports whether the peer may submit on this bind.
func (k BindKind) CanSend() bool { return k == BindTransmitter || k == BindTransceiver }

// CanReceive reports whether we may deliver to the peer on this bind.
func (k BindKind) CanReceive() bool { return k == BindReceiver || k == BindTransceiver }

// BindRequest is what a peer presented in bind_*.
type BindRequest struct {
	Kind       BindKind
	SystemID   string
	Password   string
	SystemType string
	Conn       *Conn
}

// Backend authenticates binds and creates a Session for each.
type Backend interface {
	// Bind returns a Session, or a pdu.Status refusal (ESME_RBINDFAIL,
	// ESME_RINVPASWD …); any other error is answered ESME_RBINDFAIL.
	Bind(ctx context.Context, req BindRequest) (Session, error)
}

// Session is one bound peer. Every request other than bind, unbind and
// enquire_link goes to Handle, which returns the response PDU (or a
// pdu.Status error, sent as the response of the same command with that
// status). Optional capabilities are checked by the Session itself.
type Session interface {
	Handle(ctx context.Context, p pdu.Body) (pdu.Body, error)
	// Close is called once when the bind ends for any reason.
	Close()
}

// Bounder is a Session that learns when its bind_resp has been queued
// for the peer: Bound is called once, after a successful bind, when its
// answer is ahead of anything queued later on the connection. A session
// that sends requests of its own (deliver_sm to a receiver) starts them
// in Bound, not in Backend.Bind: SMPP 3.4 has the ESME bound only once it
// has the bind_resp, and a client may drop (or refuse) what comes before
// it. Close follows Bound, as every other handler's end.
type Bounder interface {
	Bound()
}

// BackendFunc adapts a function to Backend.
type BackendFunc func(ctx context.Context, req BindRequest) (Session, error)

// Bind implements Backend.
func (f BackendFunc) Bind(ctx context.Context, req BindRequest) (Session, error) { return f(ctx, req) }

var _ Backend = BackendFunc(nil)

// ServerOptions configure a Server.
type ServerOptions struct {
	SystemID string // ours, sent in bind_*_resp
	Conn     ConnOptions
	// BindTimeout closes a connection that has not bound in time.
	BindTimeout time.Duration
	// FailDelay is the base delay before answering a failed bind; it
	// doubles with each consecutive failure from the same IP, up to
	// MaxFailDelay, to slow password guessing.
	FailDelay, MaxFailDelay time.Duration
	// MaxConns bounds the open connections, bound or not. At it, a new
	// connection makes room by closing the one that has been unbound the
	// longest, if that one has been unbound for EvictGrace or more
	// (OnReject RejectEvictedIdle for the one closed); with none such, the
	// new one is closed at once (OnReject RejectMaxConns). Default 2,000.
	MaxConns int
	// MaxUnboundPerIP bounds the connections from one source address that
	// have not bound yet: past it a new one is closed at once (OnReject
	// RejectUnboundPerIP); and its network (SourcePrefix: an IPv4 /24, an
	// IPv6 /48) may hold PrefixTimes as many (OnReject
	// RejectUnboundPerNetwork). A bound connection does not count: its
	// peer had credentials, and what it holds is the Backend's to cap (the
	// gateway caps binds per account and per enterprise). Default 32.
	MaxUnboundPerIP int
	// OnReject is called for every connection closed by a bound above,
	// with one of the Reject* reasons.
	OnReject func(reason string)
	// OnFieldRefused is called for every request refused because a
	// field is outside its SMPP 3.4 bounds (checkRequest), with the
	// command's name and the field's (RefusedFields lists them all).
	OnFieldRefused func(command, field string)
	// LogLimit limits repetitive log lines per peer (the "remote"
	// attribute every connection's lines carry) and message; its
	// OnSuppress counts what was dropped.
	LogLimit loglimit.Options
	Logger   *slog.Logger
}

// Reasons a connection is closed by a bound (ServerOptions.OnReject): the
// new one at accept, or (RejectEvictedIdle) the one unbound the longest,
// to make room for the new one at MaxConns.
const (
	RejectMaxConns          = "max_conns"
	RejectUnboundPerIP      = "unbound_per_ip"
	RejectUnboundPerNetwork = "unbound_per_network"
	RejectEvictedIdle       = "evicted_idle"
)

// RejectReasons lists every reason OnReject may get.
var RejectReasons = []string{RejectMaxConns, RejectUnboundPerIP, RejectUnboundPerNetwork, RejectEvictedIdle}

// fieldRefused reports a request refused by checkRequest to
// ServerOptions.OnFieldRefused.
func (s *Server) fieldRefused(id pdu.ID, field pdufield.Name) {
	if s.opt.OnFieldRefused != nil {
		s.opt.OnFieldRefused(id.String(), string(field))
	}
}

// EvictGrace is how long a connection stays unbound before it may be
// closed to make room at MaxConns. A real ESME sends its bind as soon as
// it has connected (over TLS, after a handshake of two round trips) and a
// known-good rebind is answered from the gateway's credential cache in
// milliseconds: a second is far beyond either, so a peer that has just
// connected is not closed before it could bind. A flood's connections are
// older than that within a second of opening, so to keep the listener
// full of connections none of which may be closed, a flood must open
// MaxConns connections a second (2,000), where 67 a second (2,000 per
// 30 s bind timeout) held it before.
const EvictGrace = time.Second

// Server accepts SMPP binds, shaped like net/http's Server: Serve,
// Close (hard stop), Shutdown (unbind every peer, then stop).
type Server struct {
	backend Backend
	opt     ServerOptions
	log     *slog.Logger

	mu         sync.Mutex
	listeners  map[net.Listener]error // → the last Accept error, nil while accepting
	serveErr   error                  // a Serve that returned without Close/Shutdown
	conns      map[*Conn]*serverConn
	unbound    map[string]int // by IP: connections not bound yet (≤ MaxConns entries)
	unboundNet map[string]int // by SourcePrefix: connections not bound yet
	// waiting are the connections not bound yet (counted in unbound), in
	// the order they were accepted: the front is the one unbound the
	// longest, closed first to make room at MaxConns.
	waiting *list.List
	// evictGrace is EvictGrace (tests change it).
	evictGrace time.Duration
	failures   map[string]bindFailures // by source, bounded by maxFailures
	// netFailures are the failed binds by network (SourcePrefix), so that
	// a network's addresses taking turns do not each start from the first
	// delay; bounded as failures, and never cleared by a good bind.
	netFailures map[string]bindFailures
	// maxFailures is maxFailureEntries (tests lower it).
	maxFailures int
	// now is the failures' and waiting's clock: time.Now (tests move it).
	now     func() time.Time
	closing bool
	done    chan struct{} // closed by Close/Shutdown: ends accept backoff
	wg      sync.WaitGroup
}

const maxFailureEntries = 10000

// bindFailures are a source's failed binds in a row, and the last one's
// time: quiet for failureForget, they are forgotten.
type bindFailures struct {
	n    int
	last time.Time
}

const failureForget = 10 * time.Minute

// NewServer returns a Server that sends binds to b.
func NewServer(b Backend, opt ServerOptions) *Server {
	if opt.Logger == nil {
		opt.Logger = slog.New(slog.DiscardHandler)
	}
	if opt.SystemID == "" {
		opt.SystemID = "qxtd"
	}
	if opt.BindTimeout <= 0 {
		opt.BindTimeout = 30 * time.Second
	}
	if opt.FailDelay <= 0 {
		opt.FailDelay = 100 * time.Millisecond
	}
	if opt.MaxFailDelay <= 0 {
		opt.MaxFailDelay = 5 * time.Second
	}
	if opt.MaxConns <= 0 {
		opt.MaxConns = DefaultMaxConns
	}
	if opt.MaxUnboundPerIP <= 0 {
		opt.MaxUnboundPerIP = DefaultMaxUnboundPerIP
	}
	opt.Logger = slog.New(loglimit.New(opt.Logger.Handler(), opt.LogLimit))
	opt.Conn.Logger = opt.Logger
	return &Server{
		backend:     b,
		opt:         opt,
		log:         opt.Logger,
		listeners:   make(map[net.Listener]error),
		conns:       make(map[*Conn]*serverConn),
		unbound:     make(map[string]int),
		unboundNet:  make(map[string]int),
		waiting:     list.New(),
		evictGrace:  EvictGrace,
		failures:    make(map[string]bindFailures),
		netFailures: make(map[string]bindFailures),
		now:         time.Now,
		done:        make(chan struct{}),
	}
}

// Defaults of ServerOptions' connection bounds.
const (
	DefaultMaxConns        = 2000
	DefaultMaxUnboundPerIP = 32
)

// ErrServerClosed is returned by Serve after Close or Shutdown.
var ErrServerClosed = errors.New("smpp: server closed")

// ErrListenerClosed is returned by Serve, and reported by Healthy, when
// its listener was closed by someone other than Close or Shutdown.
var ErrListenerClosed = errors.New("smpp: listener closed")

// Serve accepts connections on l until the server closes. Every Accept
// error is retried with a backoff of 5 ms doubling to 1 s (as net/http
// does: EMFILE at the descriptor limit passes once connections close), and
// Healthy reports it until the listener accepts again; only a closed
// listener ends Serve.
func (s *Server) Serve(l net.Listener) error {
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		return ErrServerClosed
	}
	s.listeners[l] = nil
	s.mu.Unlock()
	err := s.serve(l)
	s.mu.Lock()
	delete(s.listeners, l)
	if !errors.Is(err, ErrServerClosed) {
		s.serveErr = err
	}
	s.mu.Unlock()
	return err
}

// acceptProbe is how long a retried Accept waits for a connection before
// its timeout is taken as proof that the listener accepts again.
const acceptProbe = 200 * time.Millisecond

// deadliner is a listener whose Accept can time out (*net.TCPListener).
type deadliner interface{ SetDeadline(time.Time) error }

func (s *Server) serve(l net.Listener) error {
	dl, _ := l.(deadliner)
	var backoff time.Duration
	for {
		// Linux's accept takes a descriptor before it looks at the backlog:
		// at the limit it fails with EMFILE even with no connection
		// waiting, and once descriptors are free it blocks, with no
		// success to clear the failure (and /readyz said 503 until the
		// next client came). So a retry runs with a deadline: its timeout
		// means Accept found an empty backlog, which it can only do with a
		// descriptor to spare. A listener without deadlines is taken to be
		// well when its retry starts; a failure sets it back at once.
		probing := false
		if backoff != 0 {
			if dl != nil && dl.SetDeadline(time.Now().Add(acceptProbe)) == nil {
				probing = true
			} else {
				s.mu.Lock()
				s.listeners[l] = nil
				s.mu.Unlock()
			}
		}
		nc, err := l.Accept()
		if probing {
			_ = dl.SetDeadline(time.Time{})
			if errors.Is(err, os.ErrDeadlineExceeded) {
				backoff = 0
				s.acceptOK(l)
				continue
			}
		}
		if err != nil {
			s.mu.Lock()
			closing := s.closing
			if !closing {
				s.listeners[l] = err
			}
			s.mu.Unlock()
			if closing {
				return ErrServerClosed
			}
			if errors.Is(err, net.ErrClosed) {
				return fmt.Errorf("%w: %s: %w", ErrListenerClosed, l.Addr(), err)
			}
			if backoff == 0 {
				backoff = 5 * time.Millisecond
			} else if backoff *= 2; backoff > time.Second {
				backoff = time.Second
			}
			s.log.Warn("smpp accept failed", "listener", l.Addr().String(), "err", err, "retry_in", backoff.String())
			t := time.NewTimer(backoff)
			select {
			case <-t.C:
			case <-s.done:
				t.Stop()
				return ErrServerClosed
			}
			continue
		}
		if backoff != 0 {
			backoff = 0
			s.acceptOK(l)
		}
		s.startConn(nc)
	}
}

// acceptOK clears l's Accept failure, if it has one.
func (s *Server) acceptOK(l net.Listener) {
	s.mu.Lock()
	err, ok := s.listeners[l]
	if ok && err != nil {
		s.listeners[l] = nil
	}
	s.mu.Unlock()
	if err != nil {
		s.log.Info("smpp accept recovered", "listener", l.Addr().String())
	}
}

// Healthy reports whether every listener accepts: nil, or the error of a
// listener whose last Accept failed (it is retrying) or of a Serve that
// returned although the server was not closed. The daemon's readiness
// check fails while it is non-nil.
func (s *Server) Healthy() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing {
		return ErrServerClosed
	}
	if s.serveErr != nil {
		return s.serveErr
	}
	for l, err := range s.listeners {
		if err != nil {
			return fmt.Errorf("smpp: accept on %s failing: %w", l.Addr(), err)
		}
	}
	return nil
}

// ListenAndServe listens on addr and serves.
func (s *Server) ListenAndServe(addr string) error {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("smpp: listen %s: %w", addr, err)
	}
	return s.Serve(l)
}

type serverConn struct {
	s      *Server
	ip     string
	prefix string // SourcePrefix of the peer
	// Guarded by s.mu: while not bound yet, counted in s.unbound and
	// s.unboundNet, and in s.waiting (at waiting) since it was accepted.
	counted bool
	waiting *list.Element
	since   time.Time
	c       *Conn

	mu      sync.Mutex
	kind    BindKind
	binding bool // a bind is with the backend: requests are concurrent
	session Session
	bindTmr *time.Timer
	told    bool // the session's Bound has been called
}

func (s *Server) startConn(nc net.Conn) {
	remote := nc.RemoteAddr().String()
	sc := &serverConn{s: s, ip: SourceKey(remote), prefix: SourcePrefix(remote)}
	opt := s.opt.Conn
	opt.OnClose = func(c *Conn, err error) {
		sc.mu.Lock()
		sess := sc.session
		sc.session = nil
		if sc.bindTmr != nil {
			sc.bindTmr.Stop()
		}
		sc.mu.Unlock()
		if sess != nil {
			sess.Close()
		}
		sc.uncount()
		s.mu.Lock()
		delete(s.conns, c)
		s.mu.Unlock()
		s.wg.Done()
	}
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		_ = nc.Close()
		return
	}
	// Full, with no connection to close to make room: refused as before
	// the caps of its source are looked at. A source at its own caps is
	// refused whatever room could be made: it holds its share already.
	now := s.now()
	var victim *serverConn
	full := len(s.conns) >= s.opt.MaxConns
	if full {
		victim = s.evictable(now)
	}
	reason := ""
	switch {
	case full && victim == nil:
		reason = RejectMaxConns
	case s.unbound[sc.ip] >= s.opt.MaxUnboundPerIP:
		reason = RejectUnboundPerIP
	case s.unboundNet[sc.prefix] >= NetworkCap(s.opt.MaxUnboundPerIP):
		reason = RejectUnboundPerNetwork
	}
	if reason != "" {
		s.mu.Unlock()
		_ = nc.Close()
		s.log.Debug("smpp connection refused", "remote", remote, "reason", reason)
		if s.opt.OnReject != nil {
			s.opt.OnReject(reason)
		}
		return
	}
	if victim != nil {
		// Out of the counts now, so that the room is the new one's; its
		// OnClose, later, finds nothing more to take out.
		s.uncountLocked(victim)
		delete(s.conns, victim.c)
	}
	s.wg.Add(1)
	c := NewConn(nc, sc, opt)
	sc.c = c
	s.countLocked(sc, now)
	s.conns[c] = sc
	s.mu.Unlock()
	if victim != nil {
		victim.c.closeWith(errEvicted)
		s.log.Debug("smpp connection evicted", "remote", victim.c.RemoteAddr().String(), "unbound_for", now.Sub(victim.since).String())
		if s.opt.OnReject != nil {
			s.opt.OnReject(RejectEvictedIdle)
		}
	}
	sc.mu.Lock()
	sc.bindTmr = time.AfterFunc(s.opt.BindTimeout, func() {
		sc.mu.Lock()
		bound := sc.kind != 0
		sc.mu.Unlock()
		if !bound {
			c.fail(errors.New("smpp: no bind in time"))
		}
	})
	sc.mu.Unlock()
}

// errEvicted ends a connection closed to make room at MaxConns.
var errEvicted = errors.New("smpp: closed to make room for a new connection: unbound the longest")

// evictable is the connection unbound the longest, if it has been for
// evictGrace or more, else nil. O(1): waiting is in the order of accept.
func (s *Server) evictable(now time.Time) *serverConn {
	e := s.waiting.Front()
	if e == nil {
		return nil
	}
	sc := e.Value.(*serverConn)
	if now.Sub(sc.since) < s.evictGrace {
		return nil
	}
	return sc
}

// countLocked counts a new connection as unbound, from now.
func (s *Server) countLocked(sc *serverConn, now time.Time) {
	sc.counted = true
	sc.since = now
	sc.waiting = s.waiting.PushBack(sc)
	s.unbound[sc.ip]++
	s.unboundNet[sc.prefix]++
}

// uncountLocked takes sc out of the unbound counts, if it is in them.
func (s *Server) uncountLocked(sc *serverConn) {
	if !sc.counted {
		return
	}
	sc.counted = false
	s.waiting.Remove(sc.waiting)
	sc.waiting = nil
	if s.unbound[sc.ip]--; s.unbound[sc.ip] <= 0 {
		delete(s.unbound, sc.ip)
	}
	if s.unboundNet[sc.prefix]--; s.unboundNet[sc.prefix] <= 0 {
		delete(s.unboundNet, sc.prefix)
	}
}

// uncount takes the connection out of the unbound counts (once: when it
// binds, when it closes without having bound, or when it is evicted).
func (sc *serverConn) uncount() {
	sc.s.mu.Lock()
	sc.s.uncountLocked(sc)
	sc.s.mu.Unlock()
}

// Responded implements responder: once a successful bind's answer is
// queued, the session hears of it (Bounder).
func (sc *serverConn) Responded(req pdu.Header) {
	switch req.ID {
	case pdu.BindTransmitterID, pdu.BindReceiverID, pdu.BindTransceiverID:
	default:
		return
	}
	sc.mu.Lock()
	sess := sc.session
	tell := sess != nil && !sc.told
	sc.told = sc.told || tell
	sc.mu.Unlock()
	if b, ok := sess.(Bounder); ok && tell {
		b.Bound()
	}
}

// HandlePDU implements Handler for one server-side connection.
func (sc *serverConn) HandlePDU(ctx context.Context, c *Conn, p pdu.Body) pdu.Body {
	id := p.Header().ID
	switch id {
	case pdu.BindTransmitterID, pdu.BindReceiverID, pdu.BindTransceiverID:
		return sc.bind(ctx, c, p)
	}
	sc.mu.Lock()
	sess, kind := sc.session, sc.kind
	sc.mu.Unlock()
	if sess == nil {
		return errorResponse(p, StatusInvalidBindStatus)
	}
	// A receiver may send none of the requests held to sizes: the
	// session answers them ESME_RINVBNDSTS, whatever their fields.
	if field, st, ok := checkRequest(p); !ok && kind != BindReceiver {
		c.log.Info("field out of its SMPP bounds", "cmd", id.String(), "field", string(field), "status", fmt.Sprintf("%#x", uint32(st)))
		sc.s.fieldRefused(id, field)
		return errorResponse(p, st)
	}
	resp, err := sess.Handle(ctx, p)
	if err != nil {
		var st pdu.Status
		if !errors.As(err, &st) {
			c.log.Error("smpp handler", "cmd", id.String(), "err", err)
			st = StatusSystemError
		}
		return errorResponse(p, st)
	}
	return resp
}

func (sc *serverConn) bind(ctx context.Context, c *Conn, p pdu.Body) pdu.Body {
	var kind BindKind
	var resp pdu.Body
	switch p.Header().ID {
	case pdu.BindTransmitterID:
		kind, resp = BindTransmitter, pdu.NewBindTransmitterResp()
	case pdu.BindReceiverID:
		kind, resp = BindReceiver, pdu.NewBindReceiverResp()
	default:
		kind, resp = BindTransceiver, pdu.NewBindTransceiverResp()
	}
	_ = resp.Fields().Set(pdufield.SystemID, sc.s.opt.SystemID)
	sc.mu.Lock()
	already := sc.kind != 0 || sc.binding
	sc.binding = true
	sc.mu.Unlock()
	if already {
		resp.Header().Status = StatusAlreadyBound
		return resp
	}
	req := BindRequest{
		Kind:       kind,
		SystemID:   Str(p, pdufield.SystemID),
		Password:   Str(p, pdufield.Password),
		SystemType: Str(p, pdufield.SystemType),
		Conn:       c,
	}
	ip := sc.ip
	// A field longer than SMPP 3.4 gives it (a system_id of 16 octets
	// and more, a password of 9 …) is refused as a failed bind is, with
	// its own status, before the backend: qxtd has no such account (policy:
	// MaxSystemIDLen, MaxPasswordLen).
	var sess Session
	var err error
	if field, st, ok := checkRequest(p); !ok {
		err = fmt.Errorf("%s too long: %w", field, st)
		sc.s.fieldRefused(p.Header().ID, field)
	} else {
		sess, err = sc.s.backend.Bind(ctx, req)
	}
	if err != nil {
		var st pdu.Status
		if !errors.As(err, &st) {
			st = StatusBindFailed
		}
		if ctx.Err() != nil {
			return nil // the peer left: nobody to answer, nothing to log
		}
		c.log.Info("bind refused", "system_id", req.SystemID, "kind", kind.String(), "err", err)
		sc.s.delayFailure(ctx, ip, sc.prefix)
		sc.mu.Lock()
		sc.binding = false
		sc.mu.Unlock()
		resp.Header().Status = st
		return resp
	}
	sc.s.clearFailures(ip)
	sc.uncount()
	// SMPP 3.4 §4.1.2/§4.1.4/§4.1.6 and §5.3.2.25: the bind_*_resp
	// carries sc_interface_version, the SMPP version the SMSC supports,
	// but only to an ESME that said it speaks 3.4 (interface_version
	// 0x34, §5.2.4): one of 3.3 or earlier knows no optional parameters,
	// and is still bound. Clients take a bind_resp without it for one
	// from an SMSC of 3.3 (Cloudhopper's does).
	if Byte(p, pdufield.InterfaceVersion) >= InterfaceVersion34 {
		_ = resp.TLVFields().Set(TagSCInterfaceVersion, InterfaceVersion34)
	}
	sc.mu.Lock()
	sc.kind, sc.session = kind, sess
	if sc.bindTmr != nil {
		sc.bindTmr.Stop()
	}
	sc.mu.Unlock()
	// Closed while binding: nothing to do here. OnClose runs only after
	// every handler, this one included, has returned, so it closes sess.
	c.log.Info("bound", "system_id", req.SystemID, "kind", kind.String())
	return resp
}

// InterfaceVersion34 is SMPP 3.4's interface_version (§5.2.4), sent in
// our binds and, as sc_interface_version, in our bind_resp.
const InterfaceVersion34 uint8 = 0x34

// TagSCInterfaceVersion is the sc_interface_version TLV (§5.3.2.25),
// which go-smpp does not name.
const TagSCInterfaceVersion pdutlv.Tag = 0x0210

// RemoteIP is c's peer address as the per-address limits count it
// (SourceKey: an IPv6 peer by its /64), "" for a nil Conn.
func RemoteIP(c *Conn) string {
	if c == nil {
		return ""
	}
	return remoteIP(c.RemoteAddr())
}

func remoteIP(a net.Addr) string { return SourceKey(a.String()) }

// delayFailure slows the answer to a failed bind: FailDelay doubled per
// consecutive failure from the IP, or per PrefixTimes of them from its
// network (prefix), whichever is more: 20 addresses of one /24 failing
// once each wait as one address failing 5 times. The delay runs in the
// request's own goroutine, so other peers are not held up.
func (s *Server) delayFailure(ctx context.Context, ip, prefix string) {
	t := time.NewTimer(s.failureDelay(ip, prefix))
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}

// failureDelay counts a failed bind from ip of network prefix and returns
// how long its answer waits.
func (s *Server) failureDelay(ip, prefix string) time.Duration {
	s.mu.Lock()
	now := s.now()
	n := s.countFailure(s.failures, ip, now)
	if prefix != "" {
		n = max(n, s.countFailure(s.netFailures, prefix, now)/PrefixTimes)
	}
	s.mu.Unlock()
	d := s.opt.FailDelay << min(n, 16)
	if d > s.opt.MaxFailDelay || d <= 0 {
		d = s.opt.MaxFailDelay
	}
	return d
}

// countFailure counts a failure of key in m at now and returns the
// failures in a row before it (0 after failureForget quiet). s.mu held.
func (s *Server) countFailure(m map[string]bindFailures, key string, now time.Time) int {
	f, ok := m[key]
	if now.Sub(f.last) > failureForget {
		f.n = 0
	}
	n := f.n
	f.n++
	f.last = now
	// Bounded: full, the keys quiet for failureForget go; still full, a
	// new key is not remembered (it waits the first delay each time)
	// rather than an arbitrary one forgotten, which a flood from many
	// addresses would turn into forgetting the one guessing a password.
	limit := s.maxFailures
	if limit <= 0 {
		limit = maxFailureEntries
	}
	if !ok && len(m) >= limit {
		for k, old := range m {
			if now.Sub(old.last) > failureForget {
				delete(m, k)
			}
		}
	}
	if ok || len(m) < limit {
		m[key] = f
	}
	return n
}

func (s *Server) clearFailures(ip string) {
	s.mu.Lock()
	delete(s.failures, ip)
	s.mu.Unlock()
}

// Sessions returns how many connections are open.
func (s *Server) Sessions() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.conns)
}

func (s *Server) connections() []*Conn {
	s.mu.Lock()
	defer s.mu.Unlock()
	conns := make([]*Conn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	return conns
}

func (s *Server) stopListening() []*serverConn {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.closing {
		close(s.done)
	}
	s.closing = true
	for l := range s.listeners {
		_ = l.Close()
	}
	conns := make([]*serverConn, 0, len(s.conns))
	for _, sc := range s.conns {
		conns = append(conns, sc)
	}
	return conns
}

// Close stops listening and drops every connection at once.
func (s *Server) Close() error {
	for _, sc := range s.stopListening() {
		sc.c.closeWith(ErrClosed)
	}
	s.wg.Wait()
	return nil
}

// Shutdown stops listening, sends unbind to every bound peer and waits for
// them to answer (or ctx to end, then closes what is left). A connection
// not bound is closed at once: it has no session to unbind, and waiting on
// it held a stop up to a refused bind's failure delay (MaxFailDelay), or
// to ctx's end for a peer that never answers.
func (s *Server) Shutdown(ctx context.Context) error {
	conns := s.stopListening()
	var wg sync.WaitGroup
	for _, sc := range conns {
		sc.mu.Lock()
		bound := sc.kind != 0
		sc.mu.Unlock()
		if !bound {
			sc.c.closeWith(ErrClosed)
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			_ = sc.c.Unbind(ctx)
		}()
	}
	wg.Wait()
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return s.Close()
	}
}

// errorResponse builds the response of p's command carrying status st
// (generic_nack for commands without a response body of their own).
// SMPP 3.4 leaves out the body of an error response only for
// submit_sm_resp (§4.4.2; encode does it) and the bind_*_resp (§4.1;
// qxtd keeps their system_id, which libsmpp34 reads); the others keep
// theirs, empty: data_sm_resp and deliver_sm_resp an empty message_id
// (§4.7.2, §4.6.2), query_sm_resp its four fields (§4.8.2),
// submit_multi_resp an empty message_id and no unsuccess_sme (§4.5.2).
func errorResponse(p pdu.Body, st pdu.Status) pdu.Body {
	var r pdu.Body
	switch p.Header().ID {
	case pdu.SubmitSMID:
		r = newResp(pdu.SubmitSMRespID)
	case pdu.SubmitMultiID:
		// §4.5.2 keeps the body: an empty message_id and no_unsuccess 0.
		// go-smpp's own writes unsuccess_sme as an empty C-Octet String,
		// one octet too many, which a reader takes for a TLV cut short.
		r = NewSubmitMultiResp("", nil)
	case pdu.DeliverSMID:
		r = newResp(pdu.DeliverSMRespID)
	case pdu.QuerySMID:
		r = pdu.NewQuerySMResp()
	case pdu.CancelSMID:
		r = NewPDU(pdu.CancelSMRespID)
	case pdu.ReplaceSMID:
		r = NewPDU(pdu.ReplaceSMRespID)
	case pdu.DataSMID:
		r = NewPDU(pdu.DataSMRespID)
	default:
		r = pdu.NewGenericNACK()
	}
	r.Header().Status = st
	return r
}

// ErrorResponse is errorResponse for Session implementations.
func ErrorResponse(p pdu.Body, st pdu.Status) pdu.Body { return errorResponse(p, st) }
