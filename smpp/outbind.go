package smpp

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/fiorix/go-smpp/smpp/pdu"
	"github.com/fiorix/go-smpp/smpp/pdu/pdufield"
)

// Outbind: an SMSC that has messages for an ESME (receipts, replies)
// connects to the ESME and sends outbind with its system_id and a password
// the ESME checks; the ESME answers with bind_receiver on the same
// connection, and the SMSC then delivers as to any receiver (SMPP 3.4
// §2.2.1, §4.1.7). outbind has no response PDU.

// OutbindOptions configure AcceptOutbind.
type OutbindOptions struct {
	// SMSCSystemID and SMSCPassword are what the SMSC's outbind must
	// carry; an empty SMSCSystemID takes any. The password is compared in
	// constant time; an empty one is refused (ErrOutbindRefused): the
	// caller must configure one.
	SMSCSystemID, SMSCPassword string
	// SystemID, Password and SystemType are the bind_receiver's.
	SystemID, Password, SystemType string
	// Timeout bounds the wait for the outbind after the connection opened,
	// and then for the bind_receiver_resp. Default 10 s.
	Timeout time.Duration
	// Conn and Handler are the session's, as for a Client.
	Conn    ConnOptions
	Handler Handler
}

// ErrOutbindRefused: the connection's first PDU was not an outbind, or
// the outbind's system_id or password were not the ones expected. The
// connection is closed without an answer.
var ErrOutbindRefused = errors.New("smpp: outbind refused")

// AcceptOutbind reads the SMSC's outbind from nc, checks it, and binds as
// a receiver on nc. On success the session runs until the SMSC or the
// caller ends it (Conn.Unbind, Close); on any error nc is closed.
func AcceptOutbind(ctx context.Context, nc net.Conn, opt OutbindOptions) (*Conn, error) {
	if opt.Timeout <= 0 {
		opt.Timeout = 10 * time.Second
	}
	deadline := time.Now().Add(opt.Timeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	// The read is bounded by the deadline and by ctx: a stop closes nc.
	_ = nc.SetReadDeadline(deadline)
	stop := context.AfterFunc(ctx, func() { _ = nc.Close() })
	frame, err := ReadFrame(nc)
	stopped := !stop()
	if err != nil || stopped {
		_ = nc.Close()
		if stopped {
			return nil, fmt.Errorf("smpp: outbind from %s: %w", nc.RemoteAddr(), ctx.Err())
		}
		return nil, fmt.Errorf("smpp: outbind from %s: read: %w", nc.RemoteAddr(), err)
	}
	_ = nc.SetReadDeadline(time.Time{})
	p, err := Decode(frame)
	if err != nil || p.Header().ID != pdu.OutbindID {
		_ = nc.Close()
		if err != nil {
			return nil, fmt.Errorf("%w: %s sent no outbind: %v", ErrOutbindRefused, nc.RemoteAddr(), err)
		}
		return nil, fmt.Errorf("%w: %s sent %s, not outbind", ErrOutbindRefused, nc.RemoteAddr(), p.Header().ID)
	}
	id, pw := Str(p, pdufield.SystemID), Str(p, pdufield.Password)
	if opt.SMSCPassword == "" || subtle.ConstantTimeCompare([]byte(pw), []byte(opt.SMSCPassword)) != 1 ||
		(opt.SMSCSystemID != "" && id != opt.SMSCSystemID) {
		_ = nc.Close()
		return nil, fmt.Errorf("%w: %s presented system_id %q and a password not the ones configured", ErrOutbindRefused, nc.RemoteAddr(), id)
	}
	conn := NewConn(nc, opt.Handler, opt.Conn)
	bind := pdu.NewBindReceiver()
	f := bind.Fields()
	_ = f.Set(pdufield.SystemID, opt.SystemID)
	_ = f.Set(pdufield.Password, opt.Password)
	_ = f.Set(pdufield.SystemType, opt.SystemType)
	_ = f.Set(pdufield.InterfaceVersion, uint8(0x34))
	bctx, cancel := context.WithDeadline(ctx, time.Now().Add(opt.Timeout))
	defer cancel()
	if _, err := conn.Request(bctx, bind); err != nil {
		_ = conn.Close()
		return nil, fmt.Errorf("smpp: bind_receiver after %s's outbind: %w", nc.RemoteAddr(), err)
	}
	return conn, nil
}
