package gateway

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/fiorix/go-smpp/smpp/pdu"
	"github.com/fiorix/go-smpp/smpp/pdu/pdufield"
	"github.com/fiorix/go-smpp/smpp/pdu/pdutlv"

	"github.com/qxtd/qxtd/queue"
	"github.com/qxtd/qxtd/segment"
	"github.com/qxtd/qxtd/smpp"
)

// Bind implements smpp.Backend: it authenticates an ESME and, for a
// receiver or transceiver, registers it for receipts.
func (g *Gateway) Bind(_ context.Context, req smpp.BindRequest) (smpp.Session, error) {
	acct, err := g.policy.Authenticate(req.SystemID, req.Password)
	if err != nil {
		g.metrics.binds.WithLabelValues(req.Kind.String(), "refused").Inc()
		var st pdu.Status
		if errors.As(err, &st) {
			return nil, st
		}
		return nil, smpp.StatusBindFailed
	}
	g.metrics.binds.WithLabelValues(req.Kind.String(), "ok").Inc()
	s := &esmeSession{g: g, acct: acct, kind: req.Kind, conn: req.Conn}
	if req.Kind.CanReceive() {
		g.dlrs.attach(acct.SystemID, req.Conn)
	}
	g.metrics.boundESMEs.WithLabelValues(req.Kind.String()).Inc()
	return s, nil
}

type esmeSession struct {
	g    *Gateway
	acct *Account
	kind smpp.BindKind
	conn *smpp.Conn
}

func (s *esmeSession) Close() {
	if s.kind.CanReceive() {
		s.g.dlrs.detach(s.acct.SystemID, s.conn)
	}
	s.g.metrics.boundESMEs.WithLabelValues(s.kind.String()).Dec()
}

func (s *esmeSession) Handle(ctx context.Context, p pdu.Body) (pdu.Body, error) {
	switch p.Header().ID {
	case pdu.SubmitSMID:
		if !s.kind.CanSend() {
			return nil, smpp.StatusInvalidBindStatus
		}
		id, err := s.g.submit(ctx, s.acct, p)
		if err != nil {
			s.g.metrics.refused(err)
			return nil, err
		}
		s.g.metrics.accepted.WithLabelValues("smpp").Inc()
		resp := pdu.NewSubmitSMResp()
		_ = resp.Fields().Set(pdufield.MessageID, id)
		return resp, nil
	case pdu.QuerySMID:
		return s.g.query(s.acct, p)
	}
	return nil, smpp.StatusInvalidCommandID
}

// query answers query_sm (§4.8) for a message of the caller's own
// enterprise. Another enterprise's message is answered exactly like one
// that does not exist, so ids cannot be probed.
func (g *Gateway) query(acct *Account, p pdu.Body) (pdu.Body, error) {
	idStr := smpp.Str(p, pdufield.MessageID)
	id, err := strconv.ParseUint(idStr, 10, 64)
	if err != nil {
		return nil, smpp.StatusQueryFailed
	}
	m, err := g.store.Get(id)
	if err != nil || m.Enterprise != acct.Enterprise {
		return nil, smpp.StatusQueryFailed
	}
	// Until every segment is final the message is ENROUTE, whether it
	// waits in our store or at the SMSC.
	state, final := smpp.StateEnroute, time.Time{}
	if m.Final() {
		rc := ReceiptFor(m)
		state, final = rc.State, rc.DoneDate
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

// FormatID is how our message ids appear on the wire (decimal).
func FormatID(id uint64) string { return strconv.FormatUint(id, 10) }

// submit turns one submit_sm into a stored message and returns its id.
// The id goes back only after the store committed the message.
func (g *Gateway) submit(ctx context.Context, acct *Account, p pdu.Body) (string, error) {
	acct, limit, err := g.policy.Prepare(acct)
	if err != nil {
		return "", err
	}
	if smpp.Str(p, pdufield.ScheduleDeliveryTime) != "" {
		// Scheduled sends are not implemented yet: refuse rather than
		// send at once what the ESME wanted later.
		return "", smpp.StatusInvalidSchedule
	}
	dest, err := g.policy.Admit(acct, smpp.Str(p, pdufield.DestinationAddr))
	if err != nil {
		return "", err
	}
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
		return "", refuseBinary(err.Error())
	}
	if err != nil {
		return "", &Refusal{Status: smpp.StatusInvalidMsgLen, Reason: "bad_text", Detail: err.Error()}
	}
	if frag.Info != nil && frag.Info.Concat {
		// Reassembling ESME-split messages is not done yet: it needs the
		// parts stored durably before each is acknowledged.
		return "", &Refusal{Status: smpp.StatusInvalidESMClass, Reason: "presplit_unsupported"}
	}
	text, err := frag.Text()
	if err != nil {
		return "", &Refusal{Status: smpp.StatusInvalidMsgLen, Reason: "bad_text", Detail: err.Error()}
	}
	up := g.route(dest)
	signed := segment.Sign(text, acct.Signature, acct.UserSignature)
	plan, err := segment.Encode(signed, up.cfg.Segment)
	switch {
	case errors.Is(err, segment.ErrTooLong):
		return "", refuseTooLong(err.Error())
	case err != nil:
		return "", &Refusal{Status: smpp.StatusInvalidMsgLen, Reason: "bad_text", Detail: err.Error()}
	}
	now := time.Now()
	m := &queue.Message{
		Account:            acct.SystemID,
		Enterprise:         acct.Enterprise,
		Source:             smpp.Str(p, pdufield.SourceAddr),
		Dest:               dest,
		SourceTON:          smpp.Byte(p, pdufield.SourceAddrTON),
		SourceNPI:          smpp.Byte(p, pdufield.SourceAddrNPI),
		DestTON:            smpp.Byte(p, pdufield.DestAddrTON),
		DestNPI:            smpp.Byte(p, pdufield.DestAddrNPI),
		DataCoding:         plan.DataCoding,
		Concat:             uint8(up.cfg.Segment.Concat),
		RegisteredDelivery: smpp.Byte(p, pdufield.RegisteredDelivery),
		Upstream:           up.cfg.Name,
		Text:               signed,
		AcceptedAt:         now,
		ValidUntil:         g.validity(now, smpp.Str(p, pdufield.ValidityPeriod)),
	}
	for _, body := range plan.Parts {
		m.Parts = append(m.Parts, queue.Part{Body: body})
	}
	errs, err := g.store.EnqueueLimit(ctx, limit, m)
	if err != nil {
		g.log.Error("enqueue", "account", acct.SystemID, "err", err)
		return "", fmt.Errorf("gateway: store: %w", smpp.StatusSystemError)
	}
	if errs[0] != nil {
		return "", refuseQuota()
	}
	g.notify()
	return FormatID(m.ID), nil
}

// validity parses an SMPP time (§7.1.1), absolute or relative; the
// default applies when it is empty or unreadable.
func (g *Gateway) validity(now time.Time, v string) time.Time {
	if t, ok := smpp.ParseTime(v, now); ok && t.After(now) {
		return t
	}
	return now.Add(g.cfg.Validity)
}

// route picks the upstream for a destination. One route table per
// carrier is future work; today every message takes the first upstream.
func (g *Gateway) route(string) *upstream { return g.ups[0] }
