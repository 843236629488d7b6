package main

import (
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"

	"github.com/qxtd/qxtd/api"
)

// An enterprise's records for the operator: what a customer who calls
// about a message or a reply is answered from (GET
// /admin/v1/enterprises/{code}/messages, …/messages/{id}, …/inbox).

func (a *adminCLI) recordsCmd() *cobra.Command {
	return group(&cobra.Command{Use: "records", Short: "An enterprise's sent messages and replies: why a message was not received, whether a reply arrived"},
		a.recSent(), a.recShow(), a.recReplies(), a.recTrace(), a.recExport())
}

// recExport writes an enterprise's sent messages or its replies, every
// page, to standard output, as the enterprise's own export does; the
// rows the daemon counted go to standard error, and a file it did not
// finish is an error (exit 1), whatever was written.
func (a *adminCLI) recExport() *cobra.Command {
	var q api.RecordQuery
	var x api.RecordExport
	c := a.leaf("export CODE sent|replies [--number N] [--outcome received|failed|pending] [--account SYSTEM_ID] [--from T] [--to T] [--format csv|jsonl] [--lang en|zh]",
		"Export an enterprise's sent messages or replies (every page) to standard output", 2, 2,
		func(c *cobra.Command, cl *api.Client, args []string) error {
			var rows int64
			var err error
			switch args[1] {
			case "sent":
				rows, err = cl.ExportEnterpriseMessages(c.Context(), args[0], q, x, c.OutOrStdout())
			case "replies":
				if q.Outcome != "" || q.Account != "" {
					return usagef("records export replies: --outcome and --account are for sent")
				}
				rows, err = cl.ExportEnterpriseInbox(c.Context(), args[0], q, x, c.OutOrStdout())
			default:
				return usagef("records export: %q: want sent or replies", args[1])
			}
			if err != nil {
				return err
			}
			fmt.Fprintf(c.ErrOrStderr(), "%d rows\n", rows)
			return nil
		})
	fs := c.Flags()
	fs.StringVar(&q.Number, "number", "", "only this number (any form, or its last digits)")
	fs.StringVar(&q.Outcome, "outcome", "", "sent only: received, failed or pending")
	fs.StringVar(&q.Account, "account", "", "sent only: this user's")
	fs.StringVar(&q.From, "from", "", "at or after this time (RFC 3339)")
	fs.StringVar(&q.To, "to", "", "before this time (RFC 3339)")
	fs.StringVar(&x.Format, "format", "csv", "csv or jsonl")
	fs.StringVar(&x.Lang, "lang", "", "zh: for Excel (a BOM, Chinese headers, Beijing times)")
	return c
}

func (a *adminCLI) recTrace() *cobra.Command {
	var q api.RecordQuery
	var replies bool
	c := a.leaf("trace NUMBER [--replies] [--from T] [--to T] [--after|--before CURSOR] [--limit N]",
		"List every enterprise's sent messages to a number, or (--replies) its replies to any enterprise, newest first (for a complaint)", 1, 1,
		func(c *cobra.Command, cl *api.Client, args []string) error {
			q.Number = args[0]
			if replies {
				return a.traceReplies(c, cl, q)
			}
			page, err := cl.TraceNumber(q)
			if err != nil {
				return err
			}
			return a.out(c, page, func(w io.Writer) {
				fmt.Fprintln(w, "ENTERPRISE\tID\tACCOUNT\tTO\tSOURCE\tSTATE\tACCEPTED\tTEXT")
				for _, m := range page.Messages {
					fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", m.Enterprise, m.ID, m.Account, m.To, m.Source, m.State,
						localTime(m.AcceptedAt), clipText(m.Text, 40))
				}
				pageEnd(w, "after", page.Next, page.Missing)
			})
		})
	fs := c.Flags()
	fs.BoolVar(&replies, "replies", false, "the number's replies to every enterprise instead (with optouts of NUMBER: \"I replied TD and still get messages\")")
	fs.StringVar(&q.From, "from", "", "at or after this time (RFC 3339)")
	fs.StringVar(&q.To, "to", "", "before this time (RFC 3339)")
	fs.StringVar(&q.Cursor, "after", "", "the previous page's next")
	fs.StringVar(&q.Cursor, "before", "", "the previous page's next (--replies)")
	fs.IntVar(&q.Limit, "limit", 0, "entries per page (default 100, at most 1000)")
	return c
}

// traceReplies is records trace --replies: the number's replies to every
// enterprise, each with its enterprise and whether it reached it.
func (a *adminCLI) traceReplies(c *cobra.Command, cl *api.Client, q api.RecordQuery) error {
	page, err := cl.TraceReplies(q)
	if err != nil {
		return err
	}
	return a.out(c, page, func(w io.Writer) {
		fmt.Fprintln(w, "ENTERPRISE\tID\tFROM\tTO\tRECEIVED\tFORWARDED\tWEBHOOK\tTEXT")
		for _, m := range page.Replies {
			ent := m.Enterprise
			if ent == "" {
				ent = "-" // a number no enterprise has
			}
			fwd, hook := replyStates(m)
			fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", ent, m.ID, m.From, m.To, localTime(m.ReceivedAt), fwd, hook, clipText(m.Text, 40))
		}
		pageEnd(w, "before", page.Next, page.Missing)
	})
}

// recordFlags are the filters sent and replies share.
func recordFlags(c *cobra.Command, q *api.RecordQuery, cursor string) {
	fs := c.Flags()
	fs.StringVar(&q.Number, "number", "", "only this number (any form, or its last digits)")
	fs.StringVar(&q.From, "from", "", "at or after this time (RFC 3339)")
	fs.StringVar(&q.To, "to", "", "before this time (RFC 3339)")
	fs.StringVar(&q.Cursor, cursor, "", "the previous page's next")
	fs.IntVar(&q.Limit, "limit", 0, "entries per page (default 100, at most 1000)")
}

func (a *adminCLI) recSent() *cobra.Command {
	var q api.RecordQuery
	c := a.leaf("sent CODE [--number N] [--outcome received|failed|pending] [--account SYSTEM_ID] [--from T] [--to T] [--after CURSOR] [--limit N]",
		"List an enterprise's sent messages, newest first", 1, 1,
		func(c *cobra.Command, cl *api.Client, args []string) error {
			page, err := cl.EnterpriseMessages(args[0], q)
			if err != nil {
				return err
			}
			return a.out(c, page, func(w io.Writer) {
				fmt.Fprintln(w, "ID\tACCOUNT\tTO\tSTATE\tSEGMENTS\tERROR\tACCEPTED\tDONE\tTEXT")
				for _, m := range page.Messages {
					fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%d\t%s\t%s\t%s\t%s\n", m.ID, m.Account, m.To, m.State, m.Segments,
						m.ErrorCode, localTime(m.AcceptedAt), localTime(m.DoneAt), clipText(m.Text, 40))
				}
				pageEnd(w, "after", page.Next, page.Missing)
			})
		})
	recordFlags(c, &q, "after")
	c.Flags().StringVar(&q.Outcome, "outcome", "", "received, failed or pending")
	c.Flags().StringVar(&q.Account, "account", "", "only this user's")
	return c
}

func (a *adminCLI) recShow() *cobra.Command {
	return a.leaf("show CODE ID", "Show one message of an enterprise with each part's SMSC id, error and receipt", 2, 2,
		func(c *cobra.Command, cl *api.Client, args []string) error {
			m, err := cl.EnterpriseMessage(args[0], args[1])
			if err != nil {
				return err
			}
			return a.out(c, m, func(w io.Writer) {
				fmt.Fprintf(w, "id\t%s\naccount\t%s\nto\t%s\nsource\t%s\nstate\t%s (%s)\nsegments\t%d\n", m.ID, m.Account, m.To, m.Source, m.State, m.StateZH, m.Segments)
				if m.ErrorCode != "" {
					fmt.Fprintf(w, "error\t%s\n", m.ErrorCode)
				}
				fmt.Fprintf(w, "accepted\t%s\nsubmitted\t%s\ndone\t%s\ntext\t%s\n", localTime(m.AcceptedAt), localTime(m.SubmittedAt), localTime(m.DoneAt), m.Text)
				fmt.Fprintln(w, "PART\tSTATE\tSMSC ID\tERROR\tATTEMPTS\tSUBMITTED\tDONE")
				for _, p := range m.Parts {
					fmt.Fprintf(w, "%d\t%s\t%s\t%s\t%d\t%s\t%s\n", p.Index+1, p.State, p.SMSCID, p.ErrorCode, p.Attempts, localTime(p.SubmittedAt), localTime(p.DoneAt))
				}
			})
		})
}

func (a *adminCLI) recReplies() *cobra.Command {
	var q api.RecordQuery
	c := a.leaf("replies CODE [--number N] [--from T] [--to T] [--before CURSOR] [--limit N]",
		"List the replies (MO) to an enterprise, newest first, and whether each reached it", 1, 1,
		func(c *cobra.Command, cl *api.Client, args []string) error {
			page, err := cl.EnterpriseInbox(args[0], q)
			if err != nil {
				return err
			}
			return a.out(c, page, func(w io.Writer) {
				fmt.Fprintln(w, "ID\tFROM\tTO\tACCOUNT\tRECEIVED\tFORWARDED\tWEBHOOK\tTEXT")
				for _, m := range page.Replies {
					fwd, hook := replyStates(m)
					fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", m.ID, m.From, m.To, m.Account, localTime(m.ReceivedAt), fwd, hook, clipText(m.Text, 40))
				}
				pageEnd(w, "before", page.Next, page.Missing)
			})
		})
	recordFlags(c, &q, "before")
	return c
}

// replyStates are a reply's FORWARDED (yes, no, refused: its SMPP side)
// and WEBHOOK (pending, delivered, gave_up; "-" without a reply URL).
func replyStates(m api.InboxItem) (fwd, hook string) {
	fwd, hook = "no", m.Webhook
	switch {
	case m.Refused:
		fwd = "refused"
	case m.Forwarded:
		fwd = "yes"
	}
	if hook == "" {
		hook = "-"
	}
	return fwd, hook
}

// pageEnd ends a page's table: the flag and cursor of the next page,
// and the nodes of a cluster left out.
func pageEnd(w io.Writer, flag, next string, m api.Missing) {
	if next != "" {
		fmt.Fprintf(w, "more: --%s %s\n", flag, next)
	}
	if m.Partial {
		fmt.Fprintf(w, "partial: nodes %v could not be asked\n", m.MissingNodes)
	}
}

// localTime is t in the local zone, "" for none.
func localTime(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.Local().Format(time.DateTime)
}

// clipText is s cut to n characters, with "…" when cut.
func clipText(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n]) + "…"
}
