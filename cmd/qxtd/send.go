package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/fiorix/go-smpp/smpp/pdu"
	"github.com/fiorix/go-smpp/smpp/pdu/pdufield"
	"github.com/fiorix/go-smpp/smpp/pdu/pdutlv"
	"golang.org/x/text/encoding/unicode"

	"github.com/qxtd/qxtd/policy"
	"github.com/qxtd/qxtd/smpp"
)

// sendCmd is a small SMPP client: it binds as a transceiver, submits one
// message and prints its receipt. It is how the README shows a DLR
// without installing anything else.
func sendCmd(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("send", flag.ContinueOnError)
	fs.SetOutput(stderr)
	addr := fs.String("smpp", "127.0.0.1:2775", "qxtd SMPP address")
	sysID := fs.String("system-id", "demo", "SMPP system_id")
	pass := fs.String("password", "demo1234", "SMPP password")
	from := fs.String("from", "10690001", "source address")
	to := fs.String("to", "", "destination number (required)")
	text := fs.String("text", "", "message text (required)")
	wait := fs.Duration("wait", 30*time.Second, "how long to wait for the receipt (0 = do not wait)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *to == "" || *text == "" {
		fmt.Fprintln(stderr, "qxtd send: --to and --text are required")
		return 2
	}
	receipts := make(chan smpp.Receipt, 16)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second+*wait)
	defer cancel()
	c, err := smpp.Dial(ctx, smpp.ClientOptions{
		Addr: *addr, SystemID: *sysID, Password: *pass, Kind: smpp.BindTransceiver,
		Handler: smpp.HandlerFunc(func(_ context.Context, _ *smpp.Conn, p pdu.Body) pdu.Body {
			if rc, err := smpp.ParseReceipt(p); err == nil {
				select {
				case receipts <- rc:
				default:
				}
			}
			return pdu.NewDeliverSMResp()
		}),
	})
	if err != nil {
		fmt.Fprintln(stderr, "qxtd send:", err)
		return 1
	}
	defer func() {
		uctx, ucancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer ucancel()
		_ = c.Unbind(uctx)
	}()
	p := pdu.NewSubmitSM(nil)
	f := p.Fields()
	_ = f.Set(pdufield.SourceAddr, *from)
	_ = f.Set(pdufield.DestinationAddr, *to)
	_ = f.Set(pdufield.RegisteredDelivery, uint8(1))
	// UCS-2 carries any text; long text goes in message_payload, which the
	// gateway splits itself.
	ucs2, err := unicode.UTF16(unicode.BigEndian, unicode.IgnoreBOM).NewEncoder().Bytes([]byte(*text))
	if err != nil {
		fmt.Fprintln(stderr, "qxtd send: text:", err)
		return 1
	}
	_ = f.Set(pdufield.DataCoding, uint8(0x08))
	if len(ucs2) <= 140 {
		_ = f.Set(pdufield.ShortMessage, ucs2)
	} else {
		_ = f.Set(pdufield.ShortMessage, []byte{})
		_ = p.TLVFields().Set(pdutlv.TagMessagePayload, ucs2)
	}
	resp, err := c.Request(ctx, p)
	if err != nil {
		fmt.Fprintln(stderr, "qxtd send: submit_sm:", describeStatus(err))
		return 1
	}
	id := smpp.Str(resp, pdufield.MessageID)
	fmt.Fprintln(stdout, "submitted, message_id:", id)
	if *wait == 0 {
		return 0
	}
	for {
		select {
		case rc := <-receipts:
			if rc.ID != id {
				continue // a receipt for an earlier message of this account
			}
			fmt.Fprintln(stdout, "receipt:", rc.Format())
			return 0
		case <-ctx.Done():
			fmt.Fprintln(stderr, "qxtd send: no receipt within", *wait)
			return 1
		}
	}
}

// describeStatus names a refusal: the policy reason for vendor codes,
// go-smpp's text for standard ones.
func describeStatus(err error) string {
	var st pdu.Status
	if !errors.As(err, &st) {
		return err.Error()
	}
	for _, r := range policy.Reasons() {
		if r.Status() == uint32(st) {
			return fmt.Sprintf("command_status 0x%08X %s: %s", uint32(st), r, r.Message())
		}
	}
	return fmt.Sprintf("command_status 0x%08X: %v", uint32(st), st)
}
