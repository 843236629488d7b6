package gateway

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/fiorix/go-smpp/smpp/pdu"
	"github.com/fiorix/go-smpp/smpp/pdu/pdufield"
	"github.com/fiorix/go-smpp/smpp/pdu/pdutlv"

	"github.com/qxtd/qxtd/policy"
	"github.com/qxtd/qxtd/queue"
	"github.com/qxtd/qxtd/segment"
	"github.com/qxtd/qxtd/smpp"
)

// Bind implements smpp.Backend: it authenticates an ESME and, for a
// receiver or transceiver, registers it for receipts. ctx is the
// connection's: a bind whose peer hung up while it waited is dropped
// before the password check.
func (g *Gateway) Bind(ctx context.Context, req smpp.BindRequest) (smpp.Session, error) {
	var acct *Account
	var err error
	if ba, ok := g.policy.(BindAuthenticator); ok {
		acct, err = ba.AuthenticateBind(ctx, smpp.RemoteIP(req.Conn), req.SystemID, req.Password)
	} else if err = ctx.Err(); err == nil {
		acct, err = g.policy.Authenticate(req.SystemID, req.Password)
	}
	if errors.Is(err, ErrBindAbandoned) || ctx.Err() != nil {
		return nil, fmt.Errorf("%w: %w", smpp.StatusBindFailed, err) // nobody reads the answer
	}
	if err != nil {
		g.metrics.binds.WithLabelValues(req.Kind.String(), "refused").Inc()
		if r, ok := policy.ReasonOf(err); ok {
			return nil, pdu.Status(r.Status())
		}
		return nil, smpp.StatusBindFailed
	}
	// The caps come after the password check: only a holder of the
	// account's credentials learns that it is at its cap, and the check is
	// cheap for a rebind (AuthCache).
	if err := g.bindCaps.take(acct, g.cfg.MaxBindsPerAccount, g.cfg.MaxBindsPerEnterprise); err != nil {
		g.metrics.binds.WithLabelValues(req.Kind.String(), bindOverCap).Inc()
		return nil, err
	}
	g.metrics.binds.WithLabelValues(req.Kind.String(), "ok").Inc()
	s := &esmeSession{g: g, acct: acct, kind: req.Kind, conn: req.Conn}
	g.metrics.boundESMEs.WithLabelValues(req.Kind.String()).Inc()
	return s, nil
}

type esmeSession struct {
	g    *Gateway
	acct *Account
	kind smpp.BindKind
	conn *smpp.Conn
	// receiving is set by Bound for a receiver or transceiver: its
	// receipts and replies are forwarded on conn from then on.
	receiving atomic.Bool
}

// Bound registers a receiver or transceiver for receipts and replies
// (smpp.Bounder), once its bind_resp is queued: a forwarder started in
// Bind could queue a deliver_sm ahead of the bind_resp, which a client
// waiting for its bind_resp may drop. The crash test's client did: after
// a restart with receipts pending, a window of them went unanswered and
// the account's receipts stopped for the 30 s of their timeout.
func (s *esmeSession) Bound() {
	if !s.kind.CanReceive() {
		return
	}
	s.receiving.Store(true)
	s.g.dlrs.attach(s.acct.SystemID, s.conn)
	s.g.mos.attach(s.acct, s.conn)
	s.g.receiverBound(s.acct)
}

func (s *esmeSession) Close() {
	if s.receiving.Load() {
		s.g.dlrs.detach(s.acct.SystemID, s.conn)
		s.g.mos.detach(s.acct, s.conn)
		s.g.receiverUnbound(s.acct)
	}
	s.g.bindCaps.release(s.acct)
	s.g.metrics.boundESMEs.WithLabelValues(s.kind.String()).Dec()
}

func (s *esmeSession) Handle(ctx context.Context, p pdu.Body) (pdu.Body, error) {
	resp, err := s.handle(ctx, p)
	return resp, wireError(err)
}

// patience lets the store hold this request's writes for company
// (store.commit_delay) when the ESME has room in its window to send more
// meanwhile, so that the wait costs it latency but no throughput.
func (s *esmeSession) patience(ctx context.Context) context.Context {
	if s.conn != nil && s.conn.PeerHasRoom() {
		return s.g.store.Patient(ctx)
	}
	return ctx
}

// wireError gives a refusal its command_status from the policy package's
// table: the SMPP layer answers with the pdu.Status it finds in the
// error's chain (ESME_RSYSERR where there is none).
func wireError(err error) error {
	var st pdu.Status
	if err == nil || errors.As(err, &st) {
		return err
	}
	if r, ok := policy.ReasonOf(err); ok {
		return fmt.Errorf("%w (%w)", err, pdu.Status(r.Status()))
	}
	return err
}

func (s *esmeSession) handle(ctx context.Context, p pdu.Body) (pdu.Body, error) {
	switch p.Header().ID {
	case pdu.SubmitSMID:
		id, err := s.submit(ctx, p)
		if err != nil {
			return nil, err
		}
		return smpp.NewSubmitSMResp(id), nil
	case smpp.DataSMID:
		// data_sm (§4.7) is submit_sm's other form, which some ESMEs use
		// for everything: the same fields but the text (message_payload)
		// and the schedule, validity as qos_time_to_live. It takes
		// submit_sm's path whole (policy, parts the ESME split with the
		// SAR TLVs, receipts as deliver_sm) and answers data_sm_resp.
		id, err := s.submit(ctx, p)
		if err != nil {
			return nil, err
		}
		resp := smpp.NewPDU(smpp.DataSMRespID)
		_ = resp.Fields().Set(pdufield.MessageID, id)
		return resp, nil
	case pdu.SubmitMultiID:
		if !s.kind.CanSend() {
			return nil, smpp.StatusInvalidBindStatus
		}
		return s.g.submitMulti(s.patience(ctx), s.acct, p)
	case pdu.QuerySMID, smpp.CancelSMID, smpp.ReplaceSMID:
		// A transmitter's, as submit_sm is: SMPP 3.4 §2.3 (Table 2-1)
		// allows query_sm, cancel_sm and replace_sm in bound_tx and
		// bound_trx only, so a receiver gets ESME_RINVBNDSTS (§5.1.3).
		if !s.kind.CanSend() {
			return nil, smpp.StatusInvalidBindStatus
		}
		switch p.Header().ID {
		case pdu.QuerySMID:
			return s.g.query(ctx, s.acct, p)
		case smpp.CancelSMID:
			return s.g.cancelSM(ctx, s.acct, p)
		default:
			return s.g.replaceSM(ctx, s.acct, p)
		}
	}
	return nil, smpp.StatusInvalidCommandID
}

// submit stores one submit_sm or data_sm from a bind that may send and
// returns its message id.
func (s *esmeSession) submit(ctx context.Context, p pdu.Body) (string, error) {
	if !s.kind.CanSend() {
		return "", smpp.StatusInvalidBindStatus
	}
	start := time.Now()
	id, err := s.g.submit(s.patience(ctx), s.acct, p)
	if err != nil {
		return "", err
	}
	s.g.metrics.esmeSubmit.Observe(time.Since(start).Seconds())
	return id, nil
}

// query answers query_sm (§4.8) for a message of the caller's own
// enterprise. Another enterprise's message is answered exactly like one
// that does not exist, so ids cannot be probed. In cluster mode another
// node's id is asked of that node (owners.go); when it cannot be asked
// the answer is ESME_RSYSERR (try later), never ESME_RQUERYFAIL.
func (g *Gateway) query(ctx context.Context, acct *Account, p pdu.Body) (pdu.Body, error) {
	idStr := smpp.Str(p, pdufield.MessageID)
	id, err := strconv.ParseUint(idStr, 10, 64)
	if err != nil {
		return nil, smpp.StatusQueryFailed
	}
	m, err := g.queryLookup(id)
	if owner, ok := g.remoteOwner(id); ok && errors.Is(err, queue.ErrNotFound) {
		m, err = g.owners.OwnerQueryMessage(ctx, owner, acct.Enterprise, id)
	}
	if errors.Is(err, ErrOwnerUnavailable) {
		return nil, fmt.Errorf("query_sm %d: %w: %w", id, err, smpp.StatusSystemError)
	}
	if err != nil || m.Enterprise != acct.Enterprise {
		return nil, smpp.StatusQueryFailed
	}
	// Until every segment is final the message is ENROUTE, whether it
	// waits in our store or at the SMSC.
	state, final := smpp.StateEnroute, time.Time{}
	if m.Final() {
		rc := ReceiptFor(m)
		state, final = rc.State, g.inZone(rc.DoneDate)
	}
	resp := pdu.NewQuerySMResp()
	f := resp.Fields()
	_ = f.Set(pdufield.MessageID, idStr)
	_ = f.Set(pdufield.FinalDate, smpp.FormatTime(final))
	// go-smpp takes message_state and error_code for C-strings; they are
	// one octet each on the wire (§4.8.2).
	f[pdufield.MessageState] = &pdufield.Fixed{Data: uint8(state)}
	f[pdufield.ErrorCode] = &pdufield.Fixed{Data: 0}
	return resp, nil
}

// queryLookup finds the message of id as query_sm sees it, whatever its
// enterprise: the id of one part of a message the ESME split itself
// gives the message's state, or ENROUTE while the parts wait for the rest.
func (g *Gateway) queryLookup(id uint64) (*queue.Message, error) {
	m, err := g.store.Get(id)
	if errors.Is(err, queue.ErrNotFound) {
		m, err = g.partMessage(id)
	}
	return m, err
}

// FormatID is how our message ids appear on the wire (decimal).
func FormatID(id uint64) string { return strconv.FormatUint(id, 10) }

// submit turns one submit_sm into a stored message and returns its id.
// The id goes back only after the store committed the message.
func (g *Gateway) submit(ctx context.Context, acct *Account, p pdu.Body) (string, error) {
	frag, err := incomingFragment(p)
	if err == nil && presplit(frag) {
		// One part of a message the ESME split itself: stored on its own
		// and reassembled once the last part is in (presplit.go).
		return g.submitPart(ctx, acct, p, frag)
	}
	var req SendRequest
	if err == nil {
		var text string
		if text, err = fragmentText(frag); err == nil {
			req, err = requestWith(p, text)
		}
	}
	if err != nil {
		g.metrics.refused(err)
		return "", err
	}
	req.Dests = []string{smpp.Str(p, pdufield.DestinationAddr)}
	res, err := g.Send(ctx, acct, req)
	if err != nil {
		if errors.Is(err, ErrStore) {
			return "", fmt.Errorf("%w: %w", err, smpp.StatusSystemError)
		}
		return "", err
	}
	if res[0].Err != nil {
		return "", res[0].Err
	}
	return FormatID(res[0].ID), nil
}

// cancelSM answers cancel_sm (§4.9) for a scheduled message of the
// caller's enterprise (the scheduled outbox: once a message went to the
// SMSC it can no longer be withdrawn). Cancelling by source and
// destination without a message_id is not supported.
func (g *Gateway) cancelSM(ctx context.Context, acct *Account, p pdu.Body) (pdu.Body, error) {
	id, err := strconv.ParseUint(smpp.Str(p, pdufield.MessageID), 10, 64)
	if err != nil {
		return nil, smpp.StatusCancelFailed
	}
	if err := g.Cancel(ctx, acct, id); err != nil {
		if errors.Is(err, ErrStore) || errors.Is(err, ErrOwnerUnavailable) {
			return nil, smpp.StatusSystemError // try later
		}
		return nil, smpp.StatusCancelFailed // unknown, another enterprise's, or already sent
	}
	return smpp.NewPDU(smpp.CancelSMRespID), nil
}

// replaceSM answers replace_sm (§4.10): new text and/or schedule for a
// scheduled message of the caller's enterprise. replace_sm has no
// data_coding: the new short_message is read in the data_coding of the
// original submit_sm, as the spec intends. In cluster mode another
// node's id is replaced at that node (owners.go); when it cannot be asked
// the answer is ESME_RSYSERR (try later), as for cancel_sm.
func (g *Gateway) replaceSM(ctx context.Context, acct *Account, p pdu.Body) (pdu.Body, error) {
	id, err := strconv.ParseUint(smpp.Str(p, pdufield.MessageID), 10, 64)
	if err != nil {
		return nil, smpp.StatusReplaceFailed
	}
	m, err := g.FindMessage(ctx, acct, id)
	if errors.Is(err, ErrOwnerUnavailable) {
		return nil, smpp.StatusSystemError
	}
	if err != nil {
		return nil, smpp.StatusReplaceFailed
	}
	var sendAt time.Time
	if v := smpp.Str(p, pdufield.ScheduleDeliveryTime); v != "" {
		t, ok := smpp.ParseTime(v, time.Now())
		if !ok {
			return nil, smpp.StatusInvalidSchedule
		}
		sendAt = t
	}
	text := ""
	if sm := smpp.Bytes(p, pdufield.ShortMessage); len(sm) > 0 {
		frag, err := segment.ParseIncoming(segment.Incoming{DataCoding: m.ClientCoding, ShortMessage: sm}, false)
		if err == nil {
			text, err = frag.Text()
		}
		if err != nil {
			return nil, policy.NewRefusal(policy.ReasonBadText, err.Error())
		}
	}
	if text == "" && sendAt.IsZero() {
		return smpp.NewPDU(smpp.ReplaceSMRespID), nil // nothing to change
	}
	if err := g.Reschedule(ctx, acct, id, sendAt, text); err != nil {
		var ref *policy.Refusal
		switch {
		case errors.As(err, &ref):
			return nil, ref
		case errors.Is(err, ErrStore), errors.Is(err, ErrOwnerUnavailable):
			return nil, smpp.StatusSystemError
		}
		return nil, smpp.StatusReplaceFailed
	}
	return smpp.NewPDU(smpp.ReplaceSMRespID), nil
}

// statusDLName is ESME_RINVDLNAME: a distribution list name that names
// no address-book group of the account (or a Policy without lists).
const statusDLName pdu.Status = 0x00000034

// statusNumDests is ESME_RINVNUMDESTS, here for more distribution lists
// in one submit_multi than maxListsPerMulti (smpp.checkRequest refuses a
// number_of_dests of 0 or over 254 with it).
const statusNumDests = smpp.StatusInvalidNumDests

// maxListsPerMulti bounds the distinct distribution list names of one
// submit_multi, as maxGroupsPerSend does an HTTP group send's: each is a
// read of the account's address books (up to 8,000 contacts), and 254 of
// them would be some two million contacts decoded for one request.
const maxListsPerMulti = 50

// submitMulti handles submit_multi (§4.5): one text to many recipients,
// one message id for all, refusals per recipient in unsuccess_sme. A
// distribution list entry (dest_flag 2) is the account's address-book
// group of that name (DistributionLists): its numbers join the others,
// each once.
func (g *Gateway) submitMulti(ctx context.Context, acct *Account, p pdu.Body) (pdu.Body, error) {
	var failed smpp.UnsuccessList
	req, err := requestFrom(p)
	if err != nil {
		return nil, err
	}
	req.Multi = true
	// Every number goes once however often, and however written, it is
	// named and listed (Once): a list's member named beside it too.
	// An entry longer than SMPP 3.4 gives it (21 octets with the NUL,
	// §4.5.1) is refused on its own, the others still go:
	// ESME_RINVDSTADR for an SME address, ESME_RINVDLNAME for a list.
	var dests []smpp.DestAddress
	all := smpp.Dests(p)
	for _, d := range all {
		switch {
		case len(d.Addr) > smpp.MaxAddrLen && d.DL:
			failed = append(failed, smpp.Unsuccess{Addr: d.Addr, Status: statusDLName})
		case len(d.Addr) > smpp.MaxAddrLen:
			failed = append(failed, smpp.Unsuccess{TON: d.TON, NPI: d.NPI, Addr: d.Addr, Status: smpp.StatusInvalidDstAddr})
		case !d.DL:
			dests = append(dests, d)
		}
	}
	lists := map[string]bool{}
	for _, d := range all {
		if !d.DL || lists[d.Addr] || len(d.Addr) > smpp.MaxAddrLen {
			continue
		}
		if lists[d.Addr] = true; len(lists) > maxListsPerMulti {
			return nil, statusNumDests
		}
		numbers, err := g.listNumbers(acct, d.Addr)
		switch {
		case errors.Is(err, ErrNoList):
			failed = append(failed, smpp.Unsuccess{Addr: d.Addr, Status: statusDLName})
			continue
		case err != nil:
			return nil, fmt.Errorf("distribution list %q: %w: %w", d.Addr, err, smpp.StatusSystemError)
		}
		for _, n := range numbers {
			dests = append(dests, smpp.DestAddress{NPI: 1, Addr: strings.TrimPrefix(n, "+86")})
		}
	}
	for _, d := range dests {
		req.Dests = append(req.Dests, d.Addr)
	}
	req.Once = true
	var group uint64
	if len(req.Dests) > 0 {
		res, err := g.Send(ctx, acct, req)
		if err != nil {
			if errors.Is(err, ErrStore) {
				return nil, fmt.Errorf("%w: %w", err, smpp.StatusSystemError)
			}
			return nil, err
		}
		for i, r := range res {
			if r.Duplicate {
				continue // named before, however written: sent (or refused) once
			}
			if r.Err != nil {
				st := smpp.StatusSubmitFailed
				var ref *policy.Refusal
				if errors.As(r.Err, &ref) {
					st = pdu.Status(ref.Status())
				}
				failed = append(failed, smpp.Unsuccess{TON: dests[i].TON, NPI: dests[i].NPI, Addr: dests[i].Addr, Status: st})
				continue
			}
			if group == 0 {
				group = r.ID
			}
		}
	}
	if group == 0 {
		// Nothing accepted: the command fails with the first reason.
		if len(failed) > 0 {
			return nil, failed[0].Status
		}
		return nil, smpp.StatusInvalidDstAddr
	}
	// The first refusals, as many as the response carries
	// (NewSubmitMultiResp); every one is counted in the refusal metrics.
	return smpp.NewSubmitMultiResp(FormatID(group), failed), nil
}

// listNumbers is the numbers of the account's distribution list name, or
// ErrNoList.
func (g *Gateway) listNumbers(acct *Account, name string) ([]string, error) {
	lists, ok := g.policy.(DistributionLists)
	if !ok {
		return nil, ErrNoList
	}
	return lists.ListNumbers(acct, name)
}

// requestFrom reads what submit_sm and submit_multi share: text, source,
// schedule, validity, receipt request.
func requestFrom(p pdu.Body) (SendRequest, error) {
	text, err := incomingText(p)
	if err != nil {
		return SendRequest{}, err
	}
	return requestWith(p, text)
}

// requestWith is requestFrom with the text already decoded.
func requestWith(p pdu.Body, text string) (SendRequest, error) {
	now := time.Now()
	req := SendRequest{
		Ingress:            "smpp",
		Source:             smpp.Str(p, pdufield.SourceAddr),
		SourceTON:          smpp.Byte(p, pdufield.SourceAddrTON),
		SourceNPI:          smpp.Byte(p, pdufield.SourceAddrNPI),
		DestTON:            smpp.Byte(p, pdufield.DestAddrTON),
		DestNPI:            smpp.Byte(p, pdufield.DestAddrNPI),
		Text:               text,
		RegisteredDelivery: smpp.Byte(p, pdufield.RegisteredDelivery),
		Priority:           smpp.Byte(p, pdufield.PriorityFlag) > 0, // §5.2.14: 1–3 are priority levels
		ClientCoding:       smpp.Byte(p, pdufield.DataCoding),
	}
	if v := smpp.Str(p, pdufield.ScheduleDeliveryTime); v != "" {
		t, ok := smpp.ParseTime(v, now)
		if !ok {
			return req, smpp.StatusInvalidSchedule
		}
		req.SendAt = t
	}
	if v := smpp.Str(p, pdufield.ValidityPeriod); v != "" {
		t, ok := smpp.ParseTime(v, now)
		if !ok {
			return req, smpp.StatusInvalidExpiry
		}
		req.ValidUntil = t
	}
	// data_sm's validity: qos_time_to_live, seconds from now (§5.3.2.9);
	// 0 is taken for none, as an empty validity_period is, not for a
	// message expired before it could go.
	if p.Header().ID == smpp.DataSMID {
		if v := smpp.TLV(p, pdutlv.TagQosTimeToLive); v != nil {
			if len(v) != 4 {
				return req, smpp.StatusInvalidExpiry
			}
			if ttl := binary.BigEndian.Uint32(v); ttl > 0 {
				req.ValidUntil = now.Add(time.Duration(ttl) * time.Second)
			}
		}
	}
	return req, nil
}

// incomingText decodes the text of a submit_sm: short_message or
// message_payload in any text data_coding. Binary content and WAP ports
// are the MMS refusal. One part of a message the ESME split itself is
// refused here: submit_sm takes it apart before (submit → submitPart);
// submit_multi does not reassemble (one part for many recipients).
func incomingText(p pdu.Body) (string, error) {
	frag, err := incomingFragment(p)
	if err != nil {
		return "", err
	}
	if presplit(frag) {
		return "", policy.NewRefusal(policy.ReasonPresplitUnsupported, "submit_multi with a concatenation header")
	}
	return fragmentText(frag)
}

// incomingFragment parses the content of a submit_sm or submit_multi.
func incomingFragment(p pdu.Body) (segment.Fragment, error) {
	frag, err := segment.ParseIncoming(segment.Incoming{
		DataCoding:   smpp.Byte(p, pdufield.DataCoding),
		ESMClass:     smpp.Byte(p, pdufield.ESMClass),
		ShortMessage: smpp.Bytes(p, pdufield.ShortMessage),
		Payload:      smpp.TLV(p, pdutlv.TagMessagePayload),
		SARRef:       smpp.TLV(p, pdutlv.TagSarMsgRefNum),
		SARTotal:     smpp.TLV(p, pdutlv.TagSarTotalSegments),
		SARSeq:       smpp.TLV(p, pdutlv.TagSarSegmentSeqnum),
		DestPort:     smpp.TLV(p, pdutlv.TagDestinationPort),
	}, false)
	if errors.Is(err, segment.ErrBinary) {
		return frag, policy.NewRefusal(policy.ReasonBinaryRefused, err.Error())
	}
	if err != nil {
		return frag, policy.NewRefusal(policy.ReasonBadText, err.Error())
	}
	return frag, nil
}

// presplit reports whether frag is one part of several (UDH
// concatenation IE or SAR TLVs with a total above 1). A "part 1 of 1" is
// a whole message.
func presplit(frag segment.Fragment) bool {
	return frag.Info != nil && frag.Info.Concat && frag.Info.Total > 1
}

// fragmentText decodes a whole message's text.
func fragmentText(frag segment.Fragment) (string, error) {
	text, err := frag.Text()
	if err != nil {
		return "", policy.NewRefusal(policy.ReasonBadText, err.Error())
	}
	return text, nil
}

// route picks the upstream for a destination's carrier among those that
// list it, else among those that list none (serve any): the first of them,
// unless it has had no bind up for Config.FailoverAfter, then the next
// that has not (failover); when none has, the first (its messages wait
// for it). nil when no upstream serves the carrier.
func (g *Gateway) route(carrier string) *upstream {
	first, to := g.pick(carrier)
	if first == nil {
		return nil
	}
	return g.routedFrom(first, to)
}

// pick is route's choice without its count and log (a preview routes
// nothing): the first upstream serving carrier, and the one a message
// goes to now (first, unless it is routed around). nil, nil: none
// serves it.
func (g *Gateway) pick(carrier string) (first, to *upstream) {
	listed := false
	for _, u := range g.ups {
		if slices.Contains(u.cfg.Carriers, carrier) {
			listed = true
			break
		}
	}
	var now time.Time
	for _, u := range g.ups {
		if listed != slices.Contains(u.cfg.Carriers, carrier) || !listed && len(u.cfg.Carriers) > 0 {
			continue
		}
		if first == nil {
			first = u
		}
		if u.downSince.Load() == 0 {
			return first, u
		}
		if now.IsZero() {
			now = time.Now()
		}
		if !u.routedAroundAt(now) {
			return first, u
		}
	}
	return first, first
}

// routedFrom returns to, the upstream route chose; when that is not
// first, the message was routed around first: counted, and logged once
// an outage.
func (g *Gateway) routedFrom(first, to *upstream) *upstream {
	if to != first {
		g.metrics.failedOver.WithLabelValues(first.cfg.Name, to.cfg.Name).Inc()
		if !first.routedAround.Swap(true) {
			g.log.Warn("upstream down: new messages for its carriers go to the next upstream that serves them",
				"upstream", first.cfg.Name, "to", to.cfg.Name, "failover_after", g.cfg.FailoverAfter.String())
		}
	}
	return to
}
