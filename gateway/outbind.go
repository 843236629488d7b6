package gateway

import (
	"cmp"
	"context"
	"errors"
	"net"
	"sync"
	"time"

	"github.com/qxtd/qxtd/smpp"
)

// An SMSC that delivers by outbind (SMPP 3.4 §2.2.1) connects to qxtd,
// sends outbind, and is answered with a bind_receiver on its connection:
// its receipts and replies then come in as on a receiver qxtd bound
// itself (handleSMSC). The listener faces the network, so it is bounded:
// maxOutbinds connections at once (an SMSC needs a few), outbindTimeout
// (OutbindConfig.Timeout) for the outbind and then the
// bind_receiver_resp, a wrong password or
// anything but an outbind closed unanswered.
const (
	maxOutbinds    = 8
	outbindTimeout = 10 * time.Second
)

// Results of qxtd_upstream_outbinds_total.
const (
	outbindBound   = "bound"   // bound as a receiver after the outbind
	outbindRefused = "refused" // not an outbind, or wrong credentials: closed
	outbindFailed  = "failed"  // silent, cut, or the bind_receiver refused
	outbindFull    = "full"    // maxOutbinds connections already: closed at once
)

// endOutbindsBefore closes the outbind sessions bound before at
// (rebindReceivers): the SMSC lost them, and outbinds again for its
// receipts and replies; each would otherwise hold one of the
// maxOutbinds places until its enquire_link failed, if ever.
func (u *upstream) endOutbindsBefore(at time.Time) {
	u.obMu.Lock()
	defer u.obMu.Unlock()
	for conn, bound := range u.obSessions {
		if bound.Before(at) {
			_ = conn.Close()
		}
	}
}

// serveOutbinds accepts the SMSC's outbinds on ob.Listener until ctx ends,
// then closes it and unbinds the sessions.
func (u *upstream) serveOutbinds(ctx context.Context, ob *OutbindConfig) {
	log := u.g.log.With("upstream", u.cfg.Name, "outbind", ob.Listener.Addr().String())
	stop := context.AfterFunc(ctx, func() { _ = ob.Listener.Close() })
	defer stop()
	slots := make(chan struct{}, maxOutbinds)
	var conns sync.WaitGroup
	defer conns.Wait()
	for {
		nc, err := ob.Listener.Accept()
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return
			}
			// A transient accept error (descriptors): wait, bounded,
			// rather than spin or give the listener up.
			log.Warn("outbind listener: accept failed", "err", err)
			select {
			case <-ctx.Done():
				return
			case <-time.After(100 * time.Millisecond):
			}
			continue
		}
		select {
		case slots <- struct{}{}:
		default:
			_ = nc.Close()
			u.g.metrics.outbinds.WithLabelValues(u.cfg.Name, outbindFull).Inc()
			log.Warn("outbind refused: connections at their cap", "remote", nc.RemoteAddr().String(), "cap", maxOutbinds)
			continue
		}
		conns.Go(func() {
			defer func() { <-slots }()
			u.outbound1(ctx, nc, ob)
		})
	}
}

// outbound1 takes one outbind on nc and serves its session until it or
// ctx ends.
func (u *upstream) outbound1(ctx context.Context, nc net.Conn, ob *OutbindConfig) {
	remote := nc.RemoteAddr().String()
	log := u.g.log.With("upstream", u.cfg.Name, "remote", remote)
	conn, err := smpp.AcceptOutbind(ctx, nc, smpp.OutbindOptions{
		SMSCSystemID: ob.SystemID, SMSCPassword: ob.Password,
		SystemID: u.cfg.SystemID, Password: u.cfg.Password, SystemType: u.cfg.SystemType,
		Timeout: cmp.Or(ob.Timeout, outbindTimeout),
		Handler: smpp.HandlerFunc(u.handleSMSC),
		Conn:    smpp.ConnOptions{Window: u.cfg.Window, RespTimeout: u.cfg.RespTimeout, EnquireLink: u.cfg.EnquireLink, Logger: log},
	})
	if err != nil {
		result := outbindFailed
		if errors.Is(err, smpp.ErrOutbindRefused) {
			result = outbindRefused
		}
		u.g.metrics.outbinds.WithLabelValues(u.cfg.Name, result).Inc()
		if ctx.Err() == nil {
			log.Warn("outbind not taken", "err", err)
		}
		return
	}
	u.g.metrics.outbinds.WithLabelValues(u.cfg.Name, outbindBound).Inc()
	u.outbound.Add(1)
	defer u.outbound.Add(-1)
	u.obMu.Lock()
	u.obSessions[conn] = time.Now()
	u.obMu.Unlock()
	defer func() {
		u.obMu.Lock()
		delete(u.obSessions, conn)
		u.obMu.Unlock()
	}()
	log.Info("upstream bound as a receiver after the SMSC's outbind", "system_id", u.cfg.SystemID)
	select {
	case <-conn.Done():
		log.Warn("upstream outbind session ended", "err", conn.Err())
	case <-ctx.Done():
		uctx, cancel := context.WithTimeout(context.Background(), outbindTimeout)
		_ = conn.Unbind(uctx)
		cancel()
	}
}
