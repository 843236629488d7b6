package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	"github.com/fiorix/go-smpp/smpp/pdu"
	"github.com/fiorix/go-smpp/smpp/pdu/pdufield"
)

// writeTimeout bounds one flush: a peer that stops reading ends the
// connection instead of hanging the benchmark.
const writeTimeout = 10 * time.Second

// conn is one SMPP connection on go-smpp's codec: frames read by the
// caller (one reader), PDUs written by one writer goroutine through a
// buffered writer that is flushed whenever its queue runs empty, so a
// window of PDUs costs a few write calls, not one each.
type conn struct {
	nc   net.Conn
	r    *bufio.Reader
	out  chan pdu.Body
	done chan struct{} // closed when the writer ends
	once sync.Once
	mu   sync.Mutex
	err  error
}

func newConn(ctx context.Context, nc net.Conn) *conn {
	c := &conn{nc: nc, r: bufio.NewReaderSize(nc, 64<<10), out: make(chan pdu.Body, 4096), done: make(chan struct{})}
	go c.writer(ctx)
	context.AfterFunc(ctx, func() { c.fail(ctx.Err()) })
	return c
}

// fail closes the connection once; err is kept as the reason.
func (c *conn) fail(err error) {
	c.once.Do(func() {
		c.mu.Lock()
		c.err = err
		c.mu.Unlock()
		_ = c.nc.Close()
	})
}

// Err is why the connection ended (nil while it is up).
func (c *conn) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// closeSentinel asks the writer to flush and close.
var closeSentinel pdu.Body = pdu.NewGenericNACK()

func (c *conn) writer(ctx context.Context) {
	defer close(c.done)
	w := bufio.NewWriterSize(c.nc, 64<<10)
	for {
		var p pdu.Body
		select {
		case p = <-c.out:
		case <-ctx.Done():
			return
		}
		for {
			if p == closeSentinel {
				_ = c.nc.SetWriteDeadline(time.Now().Add(writeTimeout))
				_ = w.Flush()
				c.fail(errors.New("closed"))
				return
			}
			if err := p.SerializeTo(w); err != nil {
				c.fail(fmt.Errorf("write %s: %w", p.Header().ID, err))
				return
			}
			if len(c.out) == 0 {
				break
			}
			p = <-c.out
		}
		_ = c.nc.SetWriteDeadline(time.Now().Add(writeTimeout))
		if err := w.Flush(); err != nil {
			c.fail(fmt.Errorf("write: %w", err))
			return
		}
	}
}

// send queues p for the writer.
func (c *conn) send(ctx context.Context, p pdu.Body) error {
	select {
	case c.out <- p:
		return nil
	case <-c.done:
		if err := c.Err(); err != nil {
			return err
		}
		return errors.New("connection closed")
	case <-ctx.Done():
		return ctx.Err()
	}
}

// closeAfterFlush sends what is queued, then closes.
func (c *conn) closeAfterFlush(ctx context.Context) { _ = c.send(ctx, closeSentinel) }

// read returns the next PDU. A frame go-smpp cannot decode (a command it
// does not implement) comes back as a non-nil header with a nil body, so
// the caller can still answer it by sequence number.
func (c *conn) read() (pdu.Body, *pdu.Header, error) {
	var lb [4]byte
	if _, err := io.ReadFull(c.r, lb[:]); err != nil {
		return nil, nil, err
	}
	n := binary.BigEndian.Uint32(lb[:])
	if n < pdu.HeaderLen || n > pdu.MaxSize {
		return nil, nil, fmt.Errorf("command_length %d out of range", n)
	}
	frame := make([]byte, n)
	copy(frame, lb[:])
	if _, err := io.ReadFull(c.r, frame[4:]); err != nil {
		return nil, nil, err
	}
	h := &pdu.Header{Len: n, ID: pdu.ID(binary.BigEndian.Uint32(frame[4:])),
		Status: pdu.Status(binary.BigEndian.Uint32(frame[8:])), Seq: binary.BigEndian.Uint32(frame[12:])}
	p, err := pdu.Decode(bytes.NewReader(frame))
	if err != nil {
		return nil, h, nil
	}
	return p, h, nil
}

// str is a C-string field's text ("" when absent).
func str(p pdu.Body, k pdufield.Name) string {
	if f := p.Fields()[k]; f != nil {
		return f.String()
	}
	return ""
}

// byteField is a one-octet field's value (0 when absent).
func byteField(p pdu.Body, k pdufield.Name) uint8 {
	if f, ok := p.Fields()[k].(*pdufield.Fixed); ok {
		return f.Data
	}
	return 0
}

// isRequest: responses have bit 31 of command_id set.
func isRequest(id pdu.ID) bool { return uint32(id)&0x80000000 == 0 }
