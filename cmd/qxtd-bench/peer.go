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
// most DLRWindow receipts awaiting deliver_sm_resp per connection.
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

func (p *Peer) serve(ctx context.Context, nc net.Conn) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	c := newConn(ctx, nc)
	defer c.fail(nil)
	due := make(chan dueReceipt, 1<<16)
	window := make(chan struct{}, p.DLRWindow)
	go p.receipts(ctx, c, due, window)
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
	}
}

// receipts sends each due receipt at its time, keeping at most the
// window awaiting deliver_sm_resp.
func (p *Peer) receipts(ctx context.Context, c *conn, due <-chan dueReceipt, window chan struct{}) {
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
		if d := time.Until(r.at); d > 0 {
			t.Reset(d)
			select {
			case <-t.C:
			case <-ctx.Done():
				return
			}
		}
		select {
		case window <- struct{}{}:
		case <-ctx.Done():
			return
		}
		seq++
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
