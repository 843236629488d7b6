package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/fiorix/go-smpp/smpp/pdu"
	"github.com/fiorix/go-smpp/smpp/pdu/pdufield"
	"github.com/fiorix/go-smpp/smpp/pdu/pdutlv"
	"github.com/spf13/cobra"
	"golang.org/x/text/encoding/unicode"

	"github.com/qxtd/qxtd/policy"
	"github.com/qxtd/qxtd/smpp"
)

// sendCmd is `qxtd send`, a small SMPP client: it binds as a
// transceiver, submits one message and prints its receipt. It is how the
// README shows a DLR without installing anything else.
func sendCmd() *cobra.Command {
	var o sendOptions
	c := &cobra.Command{
		Use:   "send --to N --text T [flags]",
		Short: "Submit one message over SMPP and print its receipt",
		Args:  nargs(0, 0),
		RunE: func(c *cobra.Command, _ []string) error {
			if o.to == "" || o.text == "" {
				return usagef("--to and --text are required")
			}
			return o.send(c.Context(), c.OutOrStdout())
		},
	}
	fs := c.Flags()
	fs.StringVar(&o.addr, "smpp", "127.0.0.1:2775", "qxtd SMPP address")
	fs.StringVar(&o.sysID, "system-id", "demo", "SMPP system_id")
	fs.StringVar(&o.pass, "password", "demo1234", "SMPP password")
	fs.StringVar(&o.from, "from", "", "source address (empty: the enterprise's service number and the user's extension)")
	fs.StringVar(&o.to, "to", "", "destination number (required)")
	fs.StringVar(&o.text, "text", "", "message text (required)")
	fs.DurationVar(&o.wait, "wait", 30*time.Second, "how long to wait for the receipt (0 = do not wait)")
	return c
}

type sendOptions struct {
	addr, sysID, pass, from, to, text string
	wait                              time.Duration
}

func (o *sendOptions) send(ctx context.Context, stdout io.Writer) error {
	receipts := make(chan smpp.Receipt, 16)
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second+o.wait)
	defer cancel()
	c, err := smpp.Dial(ctx, smpp.ClientOptions{
		Addr: o.addr, SystemID: o.sysID, Password: o.pass, Kind: smpp.BindTransceiver,
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
		return err
	}
	defer func() {
		uctx, ucancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer ucancel()
		_ = c.Unbind(uctx)
	}()
	p := pdu.NewSubmitSM(nil)
	f := p.Fields()
	_ = f.Set(pdufield.SourceAddr, o.from)
	_ = f.Set(pdufield.DestinationAddr, o.to)
	_ = f.Set(pdufield.RegisteredDelivery, uint8(1))
	// UCS-2 carries any text; long text goes in message_payload, which the
	// gateway splits itself.
	ucs2, err := unicode.UTF16(unicode.BigEndian, unicode.IgnoreBOM).NewEncoder().Bytes([]byte(o.text))
	if err != nil {
		return fmt.Errorf("text: %w", err)
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
		return fmt.Errorf("submit_sm: %w", statusError{err})
	}
	id := smpp.Str(resp, pdufield.MessageID)
	fmt.Fprintln(stdout, "submitted, message_id:", id)
	if o.wait == 0 {
		return nil
	}
	for {
		select {
		case rc := <-receipts:
			if rc.ID != id {
				continue // a receipt for an earlier message of this account
			}
			fmt.Fprintln(stdout, "receipt:", rc.Format())
			return nil
		case <-ctx.Done():
			return fmt.Errorf("no receipt within %v", o.wait)
		}
	}
}

// statusError is a refused submit_sm, described by describeStatus.
type statusError struct{ err error }

func (e statusError) Error() string { return describeStatus(e.err) }
func (e statusError) Unwrap() error { return e.err }

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
