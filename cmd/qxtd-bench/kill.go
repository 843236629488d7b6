package main

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf16"

	"github.com/fiorix/go-smpp/smpp/pdu"
	"github.com/fiorix/go-smpp/smpp/pdu/pdufield"
	"github.com/fiorix/go-smpp/smpp/pdu/pdutlv"
)

// tokenPrefix starts the crash scenario's per-message token in the
// short_message text: "kill9 token:<i>." (i is the message's index, unique
// in the run), so the peer can tell which client message a submit_sm is
// (qxtd's message ids are not visible to it).
const tokenPrefix = "kill9 token:"

func tokenText(i int) string { return tokenPrefix + strconv.Itoa(i) + "." }

// tokenOf is the token in text, -1 if none.
func tokenOf(text string) int {
	j := strings.Index(text, tokenPrefix)
	if j < 0 {
		return -1
	}
	text = text[j+len(tokenPrefix):]
	k := 0
	for k < len(text) && text[k] >= '0' && text[k] <= '9' {
		k++
	}
	n, err := strconv.Atoi(text[:k])
	if err != nil {
		return -1
	}
	return n
}

// decodeText is short message octets as text: UCS-2 (data_coding 8, as
// qxtd may re-encode to add a signature) or else as they are.
func decodeText(b []byte, dc uint8) string {
	if dc == 8 && len(b)%2 == 0 {
		u := make([]uint16, len(b)/2)
		for i := range u {
			u[i] = uint16(b[2*i])<<8 | uint16(b[2*i+1])
		}
		return string(utf16.Decode(u))
	}
	return string(b)
}

// submitToken is the token of a submit_sm (short_message, its user data
// after a UDH, or message_payload), -1 if none.
func submitToken(p pdu.Body) int {
	dc := byteField(p, pdufield.DataCoding)
	f := p.Fields()
	for _, k := range []pdufield.Name{pdufield.ShortMessage, pdufield.GSMUserData} {
		if v := f[k]; v != nil {
			b := v.Bytes()
			if t := tokenOf(decodeText(b, dc)); t >= 0 {
				return t
			}
			if byteField(p, pdufield.ESMClass)&0x40 != 0 && len(b) > 0 && int(b[0])+1 <= len(b) {
				if t := tokenOf(decodeText(b[int(b[0])+1:], dc)); t >= 0 {
					return t
				}
			}
		}
	}
	if v := p.TLVFields()[pdutlv.TagMessagePayload]; v != nil {
		return tokenOf(decodeText(v.Bytes(), dc))
	}
	return -1
}

// killLedger is what the crash scenario's client got, over both binds.
type killLedger struct {
	mu       sync.Mutex
	pending  map[uint32]int // sequence number → token, unanswered
	acked    map[string]int // qxtd's message id → token
	rcpts    map[string]int // receipted message id → receipts
	refused  int            // submit_sm_resp with an error status
	firstErr uint32         // the first refusal's command_status
	strays   int            // answers of no pending submit
}

func (l *killLedger) counts() (acked, rcpts int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, n := range l.rcpts {
		rcpts += n
	}
	return len(l.acked), rcpts
}

// killBind is one bind of the crash scenario's client.
type killBind struct {
	c      *conn
	cancel context.CancelFunc
	done   chan struct{} // the reader ended
	window chan struct{}
	l      *killLedger
}

func dialKill(ctx context.Context, addr string, l *killLedger, window int) (*killBind, error) {
	c, cctx, cancel, err := bind(ctx, addr, benchSystemID, benchPassword)
	if err != nil {
		return nil, err
	}
	k := &killBind{c: c, cancel: cancel, done: make(chan struct{}), window: make(chan struct{}, window), l: l}
	go k.reader(cctx)
	return k, nil
}

func (k *killBind) close() {
	u := pdu.NewUnbind()
	u.Header().Seq = 1
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if k.c.send(ctx, u) == nil {
		select {
		case <-k.done:
		case <-ctx.Done():
		}
	}
	k.cancel()
	<-k.done
}

func (k *killBind) reader(ctx context.Context) {
	defer close(k.done)
	defer k.c.fail(nil)
	for {
		p, h, err := k.c.read()
		if err != nil {
			return
		}
		switch h.ID {
		case pdu.SubmitSMRespID:
			k.l.mu.Lock()
			tok, ok := k.l.pending[h.Seq]
			delete(k.l.pending, h.Seq)
			switch {
			case !ok:
				k.l.strays++
			case h.Status != 0 || p == nil:
				k.l.refused++
				if k.l.firstErr == 0 {
					k.l.firstErr = uint32(h.Status)
				}
			default:
				k.l.acked[str(p, pdufield.MessageID)] = tok
			}
			k.l.mu.Unlock()
			if ok {
				<-k.window
			}
		case pdu.DeliverSMID:
			r := pdu.NewDeliverSMRespSeq(h.Seq)
			if err := k.c.send(ctx, r); err != nil {
				return
			}
			if p == nil || byteField(p, pdufield.ESMClass)&0x3c != 0x04 {
				continue
			}
			id := ""
			if t := p.TLVFields()[pdutlv.TagReceiptedMessageID]; t != nil {
				id = t.String()
			}
			if id == "" {
				id = receiptID(str(p, pdufield.ShortMessage))
			}
			k.l.mu.Lock()
			k.l.rcpts[id]++
			k.l.mu.Unlock()
		case pdu.EnquireLinkID:
			if err := k.c.send(ctx, pdu.NewEnquireLinkRespSeq(h.Seq)); err != nil {
				return
			}
		case pdu.UnbindID:
			r := pdu.NewUnbindResp()
			r.Header().Seq = h.Seq
			_ = k.c.send(ctx, r)
			k.c.closeAfterFlush(ctx)
			return
		case pdu.UnbindRespID:
			return
		}
	}
}

// submit sends tokens from..to-1 (sequence number seq0+token), keeping at
// most the window unanswered and, with offered > 0, at most that many a
// second (-offered: a crash at a moderate rate, where batches are small,
// not only at full load), until done, stop is closed or the bind ends;
// next is the first token not sent.
func (k *killBind) submit(ctx context.Context, from, to int, seq0 uint32, offered float64, stop <-chan struct{}) (next int) {
	var every time.Duration
	if offered > 0 {
		every = time.Duration(float64(time.Second) / offered)
	}
	start := time.Now()
	pace := time.NewTimer(time.Hour)
	defer pace.Stop()
	for i := from; i < to; i++ {
		// Wait for a window slot and, paced, for i's time, in one select
		// (a case is off once nil): stop, the bind's end and ctx end
		// either wait. Behind schedule (timer granularity) the due ones
		// go at once.
		win := k.window
		var due <-chan time.Time
		if every > 0 {
			if d := time.Until(start.Add(time.Duration(i-from) * every)); d > 0 {
				pace.Reset(d)
				due = pace.C
			}
		}
		for win != nil || due != nil {
			select {
			case win <- struct{}{}:
				win = nil
			case <-due:
				due = nil
			case <-stop:
				return i
			case <-k.done:
				return i
			case <-ctx.Done():
				return i
			}
		}
		s := pdu.NewSubmitSM(nil)
		seq := seq0 + uint32(i)
		s.Header().Seq = seq
		f := s.Fields()
		_ = f.Set(pdufield.SourceAddr, "1069000")
		_ = f.Set(pdufield.DestAddrTON, uint8(0))
		_ = f.Set(pdufield.DestAddrNPI, uint8(1))
		_ = f.Set(pdufield.DestinationAddr, strconv.FormatInt(13700000000+int64(i), 10))
		_ = f.Set(pdufield.RegisteredDelivery, uint8(1))
		_ = f.Set(pdufield.DataCoding, uint8(0))
		_ = f.Set(pdufield.ShortMessage, []byte(tokenText(i)))
		k.l.mu.Lock()
		k.l.pending[seq] = i
		k.l.mu.Unlock()
		if k.c.send(ctx, s) != nil {
			return i + 1 // queued or not, it is pending: unanswered
		}
	}
	return to
}

// killCounts is the crash scenario's outcome from the client's ledger and
// the peer's tokens.
type killCounts struct {
	Acked, Lost, NoReceipt, NotAtPeer, PeerDups, DupReceipts int
}

func tally(acked map[string]int, rcpts map[string]int, tokens map[int]int) killCounts {
	c := killCounts{Acked: len(acked)}
	for id, tok := range acked {
		got, at := rcpts[id] > 0, tokens[tok] > 0
		if !got {
			c.NoReceipt++
		}
		if !at {
			c.NotAtPeer++
		}
		if !got && !at {
			c.Lost++
		}
	}
	for _, n := range tokens {
		c.PeerDups += max(n-1, 0)
	}
	for _, n := range rcpts {
		c.DupReceipts += max(n-1, 0)
	}
	return c
}

// runKill is the crash scenario: N submits with receipts; when half are
// acknowledged qxtd gets SIGKILL and is started again on the same store,
// configuration and ports; the client rebinds and submits the rest; then
// it waits (at most -stall without progress) for every acknowledged
// message to reach the peer and its receipt the client.
func runKill(ctx context.Context, cfg benchConfig, sc scenario, p *Peer, d *daemon) (Result, error) {
	kr := &KillResult{}
	res := Result{Scenario: sc.Name, Receipts: true, N: cfg.N, Window: cfg.Window, Kill: kr}
	l := &killLedger{pending: map[uint32]int{}, acked: map[string]int{}, rcpts: map[string]int{}}
	p.TrackTokens(true)
	defer p.TrackTokens(false)
	held0 := p.ReceiptsHeld.Load()
	start := time.Now()

	k, err := dialKill(ctx, d.SMPPAddr, l, cfg.Window)
	if err != nil {
		return res, err
	}
	stop := make(chan struct{})
	sent := make(chan int, 1)
	go func() { sent <- k.submit(ctx, 0, cfg.N, 2, cfg.Offered, stop) }()

	// Half acknowledged (or the sender done: a small -n): SIGKILL.
	half := (cfg.N + 1) / 2
	last, lastAt := -1, time.Now()
	for {
		a, _ := l.counts()
		if a >= half {
			break
		}
		if a != last {
			last, lastAt = a, time.Now()
		} else if time.Since(lastAt) > cfg.Stall {
			close(stop)
			k.close()
			return res, fmt.Errorf("stalled before the kill: %d/%d acknowledged", a, half)
		}
		select {
		case <-ctx.Done():
			close(stop)
			k.close()
			return res, ctx.Err()
		case <-k.done:
			close(stop)
			return res, fmt.Errorf("connection ended before the kill: %v", k.c.Err())
		case <-time.After(time.Millisecond):
		}
	}
	killedAt := time.Now()
	if err := d.Kill(); err != nil {
		close(stop)
		k.close()
		return res, err
	}
	close(stop)
	next := <-sent
	// The old bind's reader takes in what qxtd had written before it died.
	select {
	case <-k.done:
	case <-time.After(5 * time.Second):
	}
	k.cancel()
	<-k.done
	l.mu.Lock()
	kr.Unanswered = len(l.pending)
	clear(l.pending)
	l.mu.Unlock()
	kr.AckedBeforeKill, _ = l.counts()

	d.poll = 5 * time.Millisecond // the restart's time to the millisecond, not to the default 100 ms poll
	err = d.start(ctx)
	kr.RestartMS = float64(time.Since(killedAt).Microseconds()) / 1000
	d.poll = 0
	if err != nil {
		return res, fmt.Errorf("restart: %w", err)
	}

	// Rebind, retrying until the stall timeout.
	deadline := time.Now().Add(cfg.Stall)
	for {
		k, err = dialKill(ctx, d.SMPPAddr, l, cfg.Window)
		if err == nil {
			break
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return res, fmt.Errorf("rebind after the restart: %w", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	defer k.close()
	if n := k.submit(ctx, next, cfg.N, 2, cfg.Offered, nil); n < cfg.N {
		return res, fmt.Errorf("second bind ended after %d of %d submits: %v", n, cfg.N, k.c.Err())
	}

	// Wait for every answer of the second bind, and every acknowledged
	// message at the peer and its receipt at the client.
	done := func() bool {
		tokens := p.Tokens()
		l.mu.Lock()
		defer l.mu.Unlock()
		if len(l.pending) > 0 {
			return false
		}
		c := tally(l.acked, l.rcpts, tokens)
		return c.NoReceipt == 0 && c.NotAtPeer == 0
	}
	var waitErr error
	lastProg, lastAt := -1, time.Now()
	for !done() {
		a, r := l.counts()
		prog := a + r + int(p.Submits.Load())
		if prog != lastProg {
			lastProg, lastAt = prog, time.Now()
		} else if time.Since(lastAt) > cfg.Stall {
			waitErr = fmt.Errorf("no progress for %v", cfg.Stall)
			break
		}
		select {
		case <-ctx.Done():
			waitErr = ctx.Err()
		case <-k.done:
			waitErr = fmt.Errorf("second bind ended: %v", k.c.Err())
		case <-time.After(10 * time.Millisecond):
		}
		if waitErr != nil {
			break
		}
	}
	res.Seconds = time.Since(start).Seconds()

	tokens := p.Tokens()
	l.mu.Lock()
	c := tally(l.acked, l.rcpts, tokens)
	kr.Unanswered += len(l.pending)
	res.Errors = l.refused
	if l.firstErr != 0 {
		res.FirstErr = fmt.Sprintf("command_status %#08x", l.firstErr)
	}
	l.mu.Unlock()
	res.Answered = c.Acked + res.Errors
	kr.Acked, kr.Lost, kr.ReceiptsMissing, kr.NotAtPeer = c.Acked, c.Lost, c.NoReceipt, c.NotAtPeer
	kr.PeerDups, res.DupReceipts = c.PeerDups, c.DupReceipts
	kr.ReceiptsResent = int(p.ReceiptsHeld.Load() - held0)
	if waitErr != nil {
		kr.Wait = waitErr.Error()
	}
	res.ReceiptsGot = c.Acked - c.NoReceipt
	var errs []error
	if c.Lost > 0 {
		errs = append(errs, fmt.Errorf("%d of %d acknowledged messages lost (no receipt, never at the peer)", c.Lost, c.Acked))
	}
	// The peer sends again what the kill cut off, as an SMSC does: every
	// acknowledged message's receipt must come, matched after the restart
	// to what was stored before the kill.
	if c.NoReceipt > 0 {
		errs = append(errs, fmt.Errorf("%d of %d acknowledged messages without their receipt at the client", c.NoReceipt, c.Acked))
	}
	if res.Errors > 0 {
		errs = append(errs, fmt.Errorf("%d submit_sm refused (first: %s)", res.Errors, res.FirstErr))
	}
	if waitErr != nil && (c.Lost > 0 || c.NoReceipt > 0 || res.Errors > 0) {
		errs = append(errs, fmt.Errorf("waiting: %w", waitErr))
	}
	return res, errors.Join(errs...)
}
