package main

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fiorix/go-smpp/smpp/pdu"
	"github.com/fiorix/go-smpp/smpp/pdu/pdufield"
	"github.com/fiorix/go-smpp/smpp/pdu/pdutlv"
)

// Peer is the SMSC side: it accepts any bind, answers every submit_sm at
// once with a hex message_id and, when registered_delivery asks for it,
// sends a DELIVRD receipt DLRDelay later on the same connection, with at
// most DLRWindow receipts awaiting deliver_sm_resp per connection. As an
// SMSC keeps a system_id's receipts until they are acknowledged, a
// receipt whose connection ended before its deliver_sm_resp came (or
// before it was sent) is held and sent on the next receiver or
// transceiver bind: the crash scenario counts on it.
type Peer struct {
	DLRDelay  time.Duration
	DLRWindow int

	ln  net.Listener
	ids atomic.Uint64
	wg  sync.WaitGroup

	Binds         atomic.Int64
	Submits       atomic.Int64
	LastSubmit    atomic.Int64 // unix nanoseconds of the latest submit_sm
	ReceiptsDue   atomic.Int64 // submit_sm that asked for a receipt
	ReceiptsAcked atomic.Int64 // deliver_sm_resp received
	ReceiptsHeld  atomic.Int64 // receipts a closed connection left unacknowledged, to send again
	Ended         atomic.Int64 // connections ended (what they left is held by then)

	heldMu sync.Mutex
	held   []dueReceipt // see Peer

	// The crash scenario's tokens (see tokenOf) counted per submit_sm,
	// while TrackTokens is on.
	tokMu  sync.Mutex
	tokens map[int]int
}

// TrackTokens starts (a fresh count) or, with on false, stops counting
// the tokens of the submit_sm the peer gets.
func (p *Peer) TrackTokens(on bool) {
	p.tokMu.Lock()
	defer p.tokMu.Unlock()
	p.tokens = nil
	if on {
		p.tokens = map[int]int{}
	}
}

// Tokens is how many submit_sm carried each token so far.
func (p *Peer) Tokens() map[int]int {
	p.tokMu.Lock()
	defer p.tokMu.Unlock()
	m := make(map[int]int, len(p.tokens))
	for k, v := range p.tokens {
		m[k] = v
	}
	return m
}

func (p *Peer) countToken(req pdu.Body) {
	p.tokMu.Lock()
	defer p.tokMu.Unlock()
	if p.tokens == nil {
		return
	}
	if t := submitToken(req); t >= 0 {
		p.tokens[t]++
	}
}

// StartPeer listens on addr (127.0.0.1:0 for any port) until ctx ends.
func StartPeer(ctx context.Context, addr string, dlrDelay time.Duration) (*Peer, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	p := &Peer{DLRDelay: dlrDelay, DLRWindow: 1000, ln: ln}
	context.AfterFunc(ctx, func() { _ = ln.Close() })
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		for {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			p.wg.Add(1)
			go func() {
				defer p.wg.Done()
				p.serve(ctx, nc)
			}()
		}
	}()
	return p, nil
}

// Addr is the peer's host:port.
func (p *Peer) Addr() string { return p.ln.Addr().String() }

// Wait returns when the listener and every connection have ended.
func (p *Peer) Wait() { p.wg.Wait() }

type dueReceipt struct {
	at       time.Time
	id       string
	src, dst string
	submit   time.Time
}

// sentReceipts are a connection's receipts awaiting deliver_sm_resp, by
// sequence number.
type sentReceipts struct {
	mu   sync.Mutex
	byID map[uint32]dueReceipt
}

func (s *sentReceipts) add(seq uint32, r dueReceipt) {
	s.mu.Lock()
	s.byID[seq] = r
	s.mu.Unlock()
}

func (s *sentReceipts) ack(seq uint32) {
	s.mu.Lock()
	delete(s.byID, seq)
	s.mu.Unlock()
}

// hold keeps what a closed connection left: the receipts it sent and got
// no answer for, and those it had not sent yet.
func (p *Peer) hold(sent *sentReceipts, due chan dueReceipt) {
	sent.mu.Lock()
	left := make([]dueReceipt, 0, len(sent.byID)+len(due))
	for _, r := range sent.byID {
		left = append(left, r)
	}
	sent.mu.Unlock()
	for len(due) > 0 {
		left = append(left, <-due)
	}
	if len(left) == 0 {
		return
	}
	p.ReceiptsHeld.Add(int64(len(left)))
	p.heldMu.Lock()
	p.held = append(p.held, left...)
	p.heldMu.Unlock()
}

// DropHeld forgets the held receipts (of a store the bench threw away).
func (p *Peer) DropHeld() {
	p.heldMu.Lock()
	p.held = nil
	p.heldMu.Unlock()
}

// putBack returns a receipt the sender took but did not send.
func (p *Peer) putBack(due chan dueReceipt, r dueReceipt) {
	select {
	case due <- r:
	default:
		p.ReceiptsHeld.Add(1)
		p.heldMu.Lock()
		p.held = append(p.held, r)
		p.heldMu.Unlock()
	}
}

// release queues the held receipts on a new bind's connection, as many
// as its queue takes.
func (p *Peer) release(due chan dueReceipt) {
	p.heldMu.Lock()
	defer p.heldMu.Unlock()
	n := min(len(p.held), cap(due)-len(due))
	for _, r := range p.held[:n] {
		due <- r
	}
	p.held = p.held[n:]
}

func (p *Peer) serve(ctx context.Context, nc net.Conn) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	c := newConn(ctx, nc)
	defer c.fail(nil)
	due := make(chan dueReceipt, 1<<16)
	window := make(chan struct{}, p.DLRWindow)
	sent := &sentReceipts{byID: map[uint32]dueReceipt{}}
	rdone := make(chan struct{})
	go func() {
		defer close(rdone)
		p.receipts(ctx, c, due, window, sent)
	}()
	defer func() { // first of the deferred: the sender stops, then what it left is held
		cancel()
		<-rdone
		p.hold(sent, due)
		p.Ended.Add(1)
	}()
	release := false
	for {
		req, h, err := c.read()
		if err != nil {
			return
		}
		if req == nil {
			if isRequest(h.ID) {
				n := pdu.NewGenericNACK()
				n.Header().Seq, n.Header().Status = h.Seq, 0x03 // ESME_RINVCMDID
				_ = c.send(ctx, n)
			}
			continue
		}
		var resp pdu.Body
		switch h.ID {
		case pdu.BindTransceiverID, pdu.BindTransmitterID, pdu.BindReceiverID:
			release = h.ID != pdu.BindTransmitterID
			switch h.ID {
			case pdu.BindTransceiverID:
				resp = pdu.NewBindTransceiverResp()
			case pdu.BindTransmitterID:
				resp = pdu.NewBindTransmitterResp()
			default:
				resp = pdu.NewBindReceiverResp()
			}
			_ = resp.Fields().Set(pdufield.SystemID, "benchpeer")
			p.Binds.Add(1)
		case pdu.SubmitSMID:
			now := time.Now()
			id := strconv.FormatUint(p.ids.Add(1), 16)
			resp = pdu.NewSubmitSMResp()
			_ = resp.Fields().Set(pdufield.MessageID, id)
			p.Submits.Add(1)
			p.LastSubmit.Store(now.UnixNano())
			p.countToken(req)
			if byteField(req, pdufield.RegisteredDelivery)&0x03 != 0 {
				p.ReceiptsDue.Add(1)
				r := dueReceipt{at: now.Add(p.DLRDelay), id: id, submit: now,
					src: str(req, pdufield.SourceAddr), dst: str(req, pdufield.DestinationAddr)}
				select {
				case due <- r:
				case <-ctx.Done():
					return
				}
			}
		case pdu.DeliverSMRespID:
			p.ReceiptsAcked.Add(1)
			sent.ack(h.Seq)
			select {
			case <-window:
			default:
			}
			continue
		case pdu.EnquireLinkID:
			resp = pdu.NewEnquireLinkResp()
		case pdu.UnbindID:
			resp = pdu.NewUnbindResp()
			resp.Header().Seq = h.Seq
			_ = c.send(ctx, resp)
			c.closeAfterFlush(ctx)
			return
		default:
			if !isRequest(h.ID) {
				continue // enquire_link_resp, generic_nack: nothing to do
			}
			resp = pdu.NewGenericNACK()
			resp.Header().Status = 0x03
		}
		resp.Header().Seq = h.Seq
		if err := c.send(ctx, resp); err != nil {
			return
		}
		if release {
			release = false
			p.release(due)
		}
	}
}

// receipts sends each due receipt at its time, keeping at most the
// window awaiting deliver_sm_resp.
func (p *Peer) receipts(ctx context.Context, c *conn, due chan dueReceipt, window chan struct{}, sent *sentReceipts) {
	var seq uint32
	t := time.NewTimer(time.Hour)
	defer t.Stop()
	for {
		var r dueReceipt
		select {
		case r = <-due:
		case <-ctx.Done():
			return
		}
		// From here until it is in sent, r is only here: an early return
		// puts it back for hold.
		if d := time.Until(r.at); d > 0 {
			t.Reset(d)
			select {
			case <-t.C:
			case <-ctx.Done():
				p.putBack(due, r)
				return
			}
		}
		select {
		case window <- struct{}{}:
		case <-ctx.Done():
			p.putBack(due, r)
			return
		}
		seq++
		sent.add(seq, r)
		if err := c.send(ctx, receiptPDU(seq, r)); err != nil {
			return
		}
	}
}

const receiptDate = "0601021504"

// receiptPDU is a DELIVRD deliver_sm: Appendix B text, esm_class 0x04,
// receipted_message_id and message_state.
func receiptPDU(seq uint32, r dueReceipt) pdu.Body {
	d := pdu.NewDeliverSM()
	d.Header().Seq = seq
	f := d.Fields()
	_ = f.Set(pdufield.SourceAddrTON, uint8(1))
	_ = f.Set(pdufield.SourceAddrNPI, uint8(1))
	_ = f.Set(pdufield.SourceAddr, r.dst)
	_ = f.Set(pdufield.DestAddrTON, uint8(0))
	_ = f.Set(pdufield.DestAddrNPI, uint8(1))
	_ = f.Set(pdufield.DestinationAddr, r.src)
	_ = f.Set(pdufield.ESMClass, uint8(0x04))
	_ = f.Set(pdufield.DataCoding, uint8(0))
	// go-smpp would write a UDH length octet for these; empty fields
	// write nothing.
	f[pdufield.UDHLength] = &pdufield.SM{Data: []byte{}}
	f[pdufield.GSMUserData] = &pdufield.SM{Data: []byte{}}
	_ = f.Set(pdufield.ShortMessage, []byte(fmt.Sprintf(
		"id:%s sub:001 dlvrd:001 submit date:%s done date:%s stat:DELIVRD err:000 text:",
		r.id, r.submit.Format(receiptDate), time.Now().Format(receiptDate))))
	t := d.TLVFields()
	_ = t.Set(pdutlv.TagReceiptedMessageID, pdutlv.CString(r.id))
	_ = t.Set(pdutlv.TagMessageStateOption, uint8(2)) // message_state 0x0427: DELIVERED
	return d
}
