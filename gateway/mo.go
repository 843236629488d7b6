package gateway

import (
	"context"
	"sync"
	"time"

	"github.com/fiorix/go-smpp/smpp/pdu"
	"github.com/fiorix/go-smpp/smpp/pdu/pdufield"
	"github.com/fiorix/go-smpp/smpp/pdu/pdutlv"

	"github.com/qxtd/qxtd/policy"
	"github.com/qxtd/qxtd/queue"
	"github.com/qxtd/qxtd/segment"
	"github.com/qxtd/qxtd/smpp"
)

// Replies (MO): a deliver_sm or data_sm from the SMSC that is no receipt
// is a handset's reply to a service number (+ extension). It is routed to
// the enterprise owning the number (and the user with the extension),
// stored, and only then acknowledged; the moRouter forwards stored MOs to
// the enterprise's receiver and transceiver binds until one acknowledges.
// An MO of an enterprise with a reply_url carries it into the store, which
// queues its reply webhook in the same commit (package webhook POSTs it):
// nothing of the SMSC's path waits for that POST.

// ReplyRouter is the optional Policy part that routes replies: the owner
// of a destination number. Rules implements it; without it every MO is
// kept as matching no enterprise.
type ReplyRouter interface {
	ReplyTo(dest string) (policy.ReplyOwner, bool)
}

// ReplyTo implements ReplyRouter.
func (r Rules) ReplyTo(dest string) (policy.ReplyOwner, bool) { return r.P.ReplyTo(dest) }

var _ ReplyRouter = Rules{}

// receiveMO stores one MO that came on conn and answers the SMSC: OK once
// stored, a system error (the SMSC sends it again) when the store failed.
// A part of a long reply (a concatenation UDH or SAR TLVs) is stored as a
// part until its reply is whole (moparts.go); the SMSC's resend of a
// reply whose answer a cut lost is answered and not stored (moagain.go).
func (g *Gateway) receiveMO(ctx context.Context, conn *smpp.Conn, upstream string, p pdu.Body, resp pdu.Body) pdu.Body {
	var alphabet segment.Alphabet
	if u, ok := g.byName[upstream]; ok {
		alphabet = u.cfg.Segment.Alphabet
	}
	frag, info, err := parseMO(p, alphabet)
	m := &queue.MO{
		Source: smpp.Str(p, pdufield.SourceAddr), Dest: smpp.Str(p, pdufield.DestinationAddr),
		SourceTON: smpp.Byte(p, pdufield.SourceAddrTON), SourceNPI: smpp.Byte(p, pdufield.SourceAddrNPI),
		Upstream: upstream, ReceivedAt: time.Now(),
	}
	if err == nil && frag.Coding == segment.Octets {
		// The SMSC's data_coding, not the alphabet's reading of 0x00:
		// the octets go on as they came.
		m.DataCoding = smpp.Byte(p, pdufield.DataCoding)
		m.SourcePort, m.DestPort = portTLVs(p)
	}
	if info != nil {
		switch g.receiveMOPart(ctx, m, frag, info) {
		case partStored:
			return resp
		case partFailed:
			if ctx.Err() != nil {
				return nil // cut by the connection's end (moCut)
			}
			resp.Header().Status = smpp.StatusSystemError
			return resp
		}
		// partAlone: stored as a reply of its own, as before joining.
	}
	// The fingerprint is of the content as stored, so that a restart can
	// take it from the store (moAgain.restarted); a reply that did not
	// decode is told apart by its raw user data.
	var raw [][]byte
	if g.fillMO(m, frag, err) != nil {
		raw = [][]byte{smpp.UserData(p), smpp.TLV(p, pdutlv.TagMessagePayload)}
	}
	fp := moFingerprint(m, raw...)
	if f := g.moAgain.racing(upstream, fp, conn, m.ReceivedAt); f != nil {
		// The first copy's commit is under way on a cut connection: it
		// decides whether this is its resend.
		select {
		case <-f.done:
		case <-ctx.Done():
			return nil // the SMSC sends it again
		}
	}
	if g.moAgain.again(upstream, fp, conn, m.ReceivedAt) {
		g.metrics.moReceived.WithLabelValues(moAgainResult).Inc()
		g.log.Debug("reply sent again by the SMSC after the connection it came on was cut: answered, not stored again", "upstream", upstream, "source", m.Source, "dest", m.Dest)
		return resp
	}
	// Stored to the end whether or not the connection ends meanwhile: a
	// commit given up at the connection's end may still have stored it
	// (the queue commits an operation its transaction took in), unknown
	// to the resend that follows. Stored and known, the resend is taken
	// for what it is (it waits for this: racing). The handler does not
	// wait past the connection's end, so that the session ends at once.
	flight := g.moAgain.begin(upstream, fp, conn, m.ReceivedAt)
	stored := make(chan error, 1)
	g.wg.Go(func() {
		err := g.storeFilledMO(context.WithoutCancel(ctx), m)
		g.moAgain.end(flight, err == nil, time.Now())
		stored <- err
	})
	select {
	case err = <-stored:
	case <-ctx.Done():
		// The connection ended: no answer can reach the SMSC, which
		// sends the reply again.
		g.moCut(upstream, ctx.Err())
		return nil
	}
	if err != nil {
		resp.Header().Status = smpp.StatusSystemError
	}
	return resp
}

// moAgainResult is the result of qxtd_mo_received_total for the SMSC's
// resend of a reply stored before a cut (moagain.go).
const moAgainResult = "again"

// storeWholeMO stores m, with the text of frag (parseErr: frag did not
// parse), as one reply and sends it on (fillMO, storeFilledMO).
func (g *Gateway) storeWholeMO(ctx context.Context, m *queue.MO, frag segment.Fragment, parseErr error) error {
	g.fillMO(m, frag, parseErr)
	return g.storeFilledMO(ctx, m)
}

// fillMO sets m's content from frag (parseErr: frag did not parse): its
// octets, or its text. It returns the error of a reply that did not
// decode, which is kept with an empty text, never dropped.
func (g *Gateway) fillMO(m *queue.MO, frag segment.Fragment, parseErr error) error {
	err := parseErr
	switch {
	case err == nil && frag.Coding == segment.Octets:
		// Not text (binary, an application port, a coding qxtd cannot
		// read): the octets are kept and passed on as the handset sent
		// them.
		m.Binary, m.UDH = nonNil(frag.Data), frag.UDH
	case err == nil:
		m.Text, err = frag.Text()
	}
	if err != nil {
		// Malformed (a broken UDH, no content).
		g.log.Warn("undecodable mobile-originated message", "upstream", m.Upstream, "err", err)
	}
	return err
}

// storeFilledMO stores m (its content set: fillMO) as one reply and
// sends it on. A store failure is logged and counted unless ctx ended
// (the caller's moCut), and returned.
func (g *Gateway) storeFilledMO(ctx context.Context, m *queue.MO) error {
	result := g.resolveMO(m)
	if err := g.store.StoreMO(ctx, m); err != nil {
		if ctx.Err() == nil {
			g.log.Error("store mobile-originated message", "upstream", m.Upstream, "err", err)
			g.metrics.moReceived.WithLabelValues("store_error").Inc()
		}
		return err
	}
	g.moStored(ctx, m, result)
	return nil
}

// nonNil is b, or an empty slice for nil: a binary reply's octets may be
// none, and nil says the reply is text.
func nonNil(b []byte) []byte {
	if b == nil {
		return []byte{}
	}
	return b
}

// moCut logs a reply whose connection to the SMSC ended while it waited
// for its commit (the SMSC dropped it, or qxtd stops): no answer can
// reach the SMSC, which sends it again; so it is left unanswered, as a
// receipt is (upstream.go), and not counted or logged as a store failure.
func (g *Gateway) moCut(upstream string, err error) {
	g.log.Debug("reply left unanswered: the connection to the SMSC ended before it was stored", "upstream", upstream, "err", err)
}

// parseMO reads a deliver_sm's or data_sm's text as one part: info is
// its concatenation (UDH, else SAR TLVs) when it is one part of several,
// nil otherwise. data_coding 0x00 is read in the SMSC's default alphabet.
func parseMO(p pdu.Body, alphabet segment.Alphabet) (segment.Fragment, *segment.UDHInfo, error) {
	dc := smpp.Byte(p, pdufield.DataCoding)
	if dc == segment.DataCodingGSM7 {
		dc = alphabet.DataCoding()
	}
	// UserData: the short_message with its UDH, which ParseIncoming reads
	// where esm_class says there is one (a part of a long reply the SMSC
	// split); without it the text's first octets were taken for the UDH.
	frag, err := segment.ParseIncoming(segment.Incoming{
		DataCoding: dc, ESMClass: smpp.Byte(p, pdufield.ESMClass),
		ShortMessage: smpp.UserData(p), Payload: smpp.TLV(p, pdutlv.TagMessagePayload),
		DestPort: smpp.TLV(p, pdutlv.TagDestinationPort), KeepOctets: true,
	}, false)
	if err != nil {
		return frag, nil, err
	}
	info := frag.Info
	if info == nil || !info.Concat {
		// SAR TLVs read apart: a reply with broken ones keeps its text.
		sar, err := segment.ParseSAR(smpp.TLV(p, pdutlv.TagSarMsgRefNum), smpp.TLV(p, pdutlv.TagSarTotalSegments), smpp.TLV(p, pdutlv.TagSarSegmentSeqnum))
		info = nil
		if err == nil {
			info = &sar
		}
	}
	if info == nil || !info.Concat || info.Total < 2 {
		return frag, nil, nil
	}
	return frag, info, nil
}

// portTLVs reads p's source_port and destination_port TLVs: nil when
// absent or not of the two octets SMPP 3.4 §5.3.2.6–7 gives them.
func portTLVs(p pdu.Body) (src, dst *uint16) {
	read := func(t pdutlv.Tag) *uint16 {
		v := smpp.TLV(p, t)
		if len(v) != 2 {
			return nil
		}
		port := uint16(v[0])<<8 | uint16(v[1])
		return &port
	}
	return read(pdutlv.TagSourcePort), read(pdutlv.TagDestinationPort)
}

// resolveMO sets m's owner from its destination (and its opt-out mark)
// and returns the result it is counted under.
func (g *Gateway) resolveMO(m *queue.MO) string {
	result := "unmatched"
	if rr, ok := g.policy.(ReplyRouter); ok {
		if o, ok := rr.ReplyTo(m.Dest); ok {
			m.Enterprise, m.Account, m.Extension, m.ReplyURL = o.Enterprise, o.SystemID, o.Extension, o.ReplyURL
			result = "matched"
		}
	}
	if m.Enterprise != "" {
		_, ok := g.policy.(OptOutRecorder)
		m.OptOutPending = ok && policy.IsOptOut(m.Text, g.optOutKeywords())
		m.OptOut = m.OptOutPending
	}
	return result
}

// moStored counts a stored reply and sends it on: its opt-out, and the
// forwarders to the enterprise's ESMEs (here and on the other nodes).
func (g *Gateway) moStored(ctx context.Context, m *queue.MO, result string) {
	g.metrics.moReceived.WithLabelValues(result).Inc()
	if m.Enterprise == "" {
		g.metrics.moUnmatched.Inc()
		g.log.Warn("mobile-originated message for no enterprise: kept", "upstream", m.Upstream, "dest", m.Dest, "id", m.ID)
		return
	}
	if m.OptOutPending {
		g.optOuts.record(ctx, m)
	}
	g.mos.kick(m.Enterprise)
	g.relayKick("m:" + m.Enterprise)
}

func isReason(err error, want policy.Reason) bool {
	r, ok := policy.ReasonOf(err)
	return ok && r == want
}

// moRouter forwards stored MOs to the ESMEs: one forwarder per
// enterprise with a receiver or transceiver bound, ending with its last
// such bind. An MO for a user goes to that user's binds only (it waits
// for one); an MO for the enterprise as a whole to any of its binds.
type moRouter struct {
	g   *Gateway
	set *forwarders[*moForwarder]
}

type moBind struct {
	account string
	conn    *smpp.Conn
	// long is how a long reply goes to this bind (Account.LongReplies)
	// as the account was at its bind: what replyForm falls back on.
	long string
}

type moForwarder struct {
	enterprise string
	wake       chan struct{}

	mu    sync.Mutex
	binds []moBind
	rr    int
	// held are the replies the run's reads skip: those in flight (being
	// sent, or their acknowledgement committed: false), and those that
	// failed (true), until DLRRetry has passed or a bind comes.
	held map[uint64]bool
	// pause: the ESME asked to slow down (esmePause).
	pause esmePause
	// rescan: the run's next read starts from the first pending reply
	// again, not from where it had read to: a hold ended, or a bind came
	// (a user that some replies passed over wait for).
	rescan bool
}

func newMORouter(g *Gateway) *moRouter {
	return &moRouter{g: g, set: newForwarders[*moForwarder]()}
}

func (r *moRouter) attach(acct *Account, c *smpp.Conn) {
	r.set.attach(r.g.ctx, acct.Enterprise,
		func(wake chan struct{}) *moForwarder {
			return &moForwarder{enterprise: acct.Enterprise, wake: wake, held: map[uint64]bool{}}
		},
		func(f *moForwarder) {
			f.mu.Lock()
			f.binds = append(f.binds, moBind{acct.SystemID, c, acct.LongReplies})
			// It may be the user some replies wait for, or the ESME
			// back after a drop that failed the replies in flight: they
			// go now, not at the retry delay.
			f.rescan = true
			for id, failed := range f.held {
				if failed {
					delete(f.held, id)
				}
			}
			f.mu.Unlock()
		},
		r.run)
}

func (r *moRouter) detach(acct *Account, c *smpp.Conn) {
	r.set.detach(acct.Enterprise, func(f *moForwarder) bool {
		f.mu.Lock()
		defer f.mu.Unlock()
		for i, b := range f.binds {
			if b.conn == c {
				f.binds = append(f.binds[:i:i], f.binds[i+1:]...)
				break
			}
		}
		return len(f.binds) == 0
	})
}

func (r *moRouter) kick(enterprise string) { r.set.kick(enterprise) }

func (r *moRouter) stop() { r.set.stop() }

// bind picks a bind for an MO: account's, or any for account "", passing
// over one that has ended and is not yet detached.
func (f *moForwarder) bind(account string) (moBind, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := len(f.binds)
	for i := range n {
		b := f.binds[(f.rr+i)%n]
		if (account == "" || b.account == account) && !connEnded(b.conn) {
			f.rr = (f.rr + i + 1) % n
			return b, true
		}
	}
	return moBind{}, false
}

const moBatch = 64

// run forwards the enterprise's pending MOs in id order, up to
// MOWindow at once: each goes (all its parts) once the one before it is
// queued on the wire, so they reach the ESME in the order they came,
// and their answers are awaited together, their acknowledgements sharing
// commits. One at a time (MOWindow 1), each reply took the ESME's round
// trip and a commit of its own: BenchmarkReplyForward measured a window
// of 64 at 16 × the replies a second to an ESME on loopback, 56 × to one
// answering in 10 ms. A reply that failed waits for the retry delay;
// one whose user has no bind is passed over until a bind comes (or the
// next read from the first); the others go on meanwhile.
func (r *moRouter) run(ctx context.Context, f *moForwarder) {
	g := r.g
	slots := make(chan struct{}, g.cfg.MOWindow)
	var sending sync.WaitGroup
	defer sending.Wait()
	turn := make(chan struct{}) // closed: the last reply started is queued
	close(turn)
	skip := func(id uint64) bool {
		f.mu.Lock()
		defer f.mu.Unlock()
		_, held := f.held[id]
		return held
	}
	t := time.NewTimer(0)
	defer t.Stop()
	// Reads go on from the last reply read (after): a new reply has a
	// larger id than every one before it, so a read from the first is
	// needed only once a hold ended or a bind came (the user some replies
	// passed over wait for), and every DLRRetry for good measure.
	// Otherwise each read would walk over the replies passed over first:
	// a user with no bind and a backlog of 20,000 would cost a walk over
	// them every read.
	var after uint64
	var first time.Time // of the last read from the first
	for {
		f.mu.Lock()
		if f.rescan || time.Since(first) >= g.cfg.DLRRetry {
			after, f.rescan = 0, false
		}
		f.mu.Unlock()
		if after == 0 {
			first = time.Now()
		}
		mos, err := g.store.PendingMOsAfter(f.enterprise, after, g.cfg.MOWindow, skip)
		if err != nil {
			g.log.Error("pending replies", "enterprise", f.enterprise, "err", err)
			f.mu.Lock()
			f.rescan = true
			f.mu.Unlock()
		}
		for _, m := range mos {
			b, ok := f.bind(m.Account)
			if !ok {
				// The user has no receiver bound: it waits, passed over
				// until a bind comes or the next read from the first.
				continue
			}
			select {
			case slots <- struct{}{}:
			case <-ctx.Done():
				return
			}
			// After the slot: the answer that freed it may have asked
			// for the pause.
			if !f.pause.wait(ctx) {
				return
			}
			f.mu.Lock()
			f.held[m.ID] = false
			f.mu.Unlock()
			prev, mine := turn, make(chan struct{})
			turn = mine
			sending.Go(func() {
				switch ok, gone := r.deliver(ctx, f, b, m, prev, mine); {
				case ok || gone:
					// Done; or its bind ended, and another bind (or the
					// next to come) takes it now, not at DLRRetry.
					f.mu.Lock()
					delete(f.held, m.ID)
					f.rescan = f.rescan || gone
					f.mu.Unlock()
				default:
					r.retryLater(f, m.ID)
				}
				<-slots
				f.kick()
			})
		}
		// Read on until a read is empty: more may be pending (a read ends
		// at MOWindow, or short of it at the store's bound on long
		// replies' content).
		if len(mos) > 0 {
			after = mos[len(mos)-1].ID
			continue
		}
		if !waitWake(ctx, t, g.cfg.DLRRetry, f.wake) {
			return
		}
	}
}

// retryLater keeps reply id, which failed, out of f's reads for
// DLRRetry, or until a bind comes.
func (r *moRouter) retryLater(f *moForwarder, id uint64) {
	f.mu.Lock()
	f.held[id] = true
	f.mu.Unlock()
	time.AfterFunc(r.g.cfg.DLRRetry, func() {
		f.mu.Lock()
		if f.held[id] { // not released by a bind and sent again meanwhile
			delete(f.held, id)
			f.rescan = true
		}
		f.mu.Unlock()
		f.kick()
	})
}

func (f *moForwarder) kick() { wakeUp(f.wake) }

// deliver sends m to bind b, every part, once the reply before it is
// queued (prev closed), closing mine once its own parts are queued (or it
// gave up), then waits for their answers and records the reply
// forwarded. ok false: it is to be sent again later; gone, because the
// bind ended. Parts sent again carry the same reference (replyPDUs): the
// ESME joins each once.
func (r *moRouter) deliver(ctx context.Context, f *moForwarder, b moBind, m *queue.MO, prev <-chan struct{}, mine chan struct{}) (ok, gone bool) {
	var pdus []pdu.Body
	var errs []error
	var answers sync.WaitGroup
	func() {
		defer close(mine)
		select {
		case <-prev:
		case <-ctx.Done():
			errs = []error{ctx.Err()}
			return
		}
		// The bind chosen may have ended while the replies before this
		// one went: another of the user's takes it.
		if connEnded(b.conn) {
			if nb, ok := f.bind(m.Account); ok {
				b = nb
			}
		}
		pdus = replyPDUs(m, r.g.replyForm(b))
		errs = make([]error, len(pdus))
		for i, p := range pdus {
			queued := make(chan struct{})
			answers.Go(func() {
				rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
				defer cancel()
				_, errs[i] = b.conn.RequestQueued(rctx, p, func() { close(queued) })
			})
			<-queued
		}
	}()
	answers.Wait()
	outcome := "ok"
	for _, err := range errs {
		if f.pause.answered(err, time.Now(), r.g.cfg.RetryMin, r.g.cfg.RetryMax) && outcome == "ok" {
			outcome = moForwardThrottled
		}
		switch {
		case refusedForGood(err):
			// ESME_RX_P_APPN or ESME_RX_R_APPN (SMPP 3.4 §5.1.3), to the
			// reply or one of its parts: the ESME will never take it.
			// Sent again it would get the same answer, and be sent
			// every retry delay for ever: it is taken as answered
			// instead (it stays in the inbox, marked refused), and
			// counted refused.
			outcome = moForwardRefused
			r.g.log.Debug("reply refused for good by the ESME: not sent again", "enterprise", f.enterprise, "account", m.Account, "id", m.ID, "err", err)
		case err != nil && outcome == "ok":
			outcome = "error"
		}
	}
	if outcome == "error" || outcome == moForwardThrottled {
		r.g.metrics.moForward.WithLabelValues(outcome).Inc()
		return false, outcome == "error" && connEnded(b.conn)
	}
	if err := r.g.store.AckMO(context.WithoutCancel(ctx), f.enterprise, m.ID, time.Now(), outcome == moForwardRefused); err != nil {
		r.g.log.Error("ack reply", "enterprise", f.enterprise, "id", m.ID, "err", err)
		return false, false
	}
	r.g.metrics.moForward.WithLabelValues(outcome).Inc()
	return true, false
}

// replyForm is how a long reply goes to bind b now: its account's
// long_replies as the policy has it (ReplyFormats), or as it was at the
// bind. A reply sent again after the form changed goes in the new form:
// an ESME whose form was changed because it could not read the old one
// joined none of those parts.
func (g *Gateway) replyForm(b moBind) string {
	if rf, ok := g.policy.(ReplyFormats); ok {
		if lr, ok := rf.LongRepliesOf(b.account); ok {
			return lr
		}
	}
	return b.long
}

// replyPDUs are the deliver_sm that carry m to a bind whose account takes
// long replies as long says (Account.LongReplies): one, the whole reply,
// in message_payload past short_message's 254 octets (long "", the
// default); or, for "udh8", "udh16" and "sar", one when it fits one SMS
// and else its parts, as a carrier SMSC delivers a long reply, each with
// the reply's port TLVs. The reference is the reply's id (its low 8 or
// 16 bits), so that parts sent again after an error or a restart carry
// the one the ESME saw. A reply 255 parts cannot hold (a long
// message_payload from the SMSC) goes whole, as does a text that did not
// decode (stored empty).
func replyPDUs(m *queue.MO, long string) []pdu.Body {
	whole := func() []pdu.Body {
		if m.Binary != nil {
			o := smpp.Octets{Data: m.Binary, DataCoding: m.DataCoding, UDH: m.UDH, SourcePort: m.SourcePort, DestPort: m.DestPort}
			return []pdu.Body{smpp.NewOctetsPDU(o, m.Source, m.Dest, m.SourceTON, m.SourceNPI)}
		}
		return []pdu.Body{smpp.NewTextPDU(m.Text, m.Source, m.Dest, m.SourceTON, m.SourceNPI)}
	}
	c, err := segment.ParseConcat(long)
	if long == "" || err != nil || c == segment.ConcatPayload {
		return whole()
	}
	var frames []segment.Frame
	if m.Binary != nil {
		frames, err = segment.OctetFrames(m.Binary, m.DataCoding, m.UDH, c, uint16(m.ID))
	} else {
		frames, err = segment.TextFrames(m.Text, c, uint16(m.ID))
	}
	if err != nil {
		return whole()
	}
	pdus := make([]pdu.Body, len(frames))
	for i, fr := range frames {
		pdus[i] = smpp.NewFramePDU(fr, m.Source, m.Dest, m.SourceTON, m.SourceNPI, m.SourcePort, m.DestPort)
	}
	return pdus
}

// moForwardRefused is the outcome of qxtd_mo_forwarded_total for a
// reply the ESME refused for good (refusedForGood), moForwardThrottled
// for one it answered ESME_RTHROTTLED or ESME_RMSGQFUL (esmePause).
const (
	moForwardRefused   = "refused"
	moForwardThrottled = "throttled"
)
