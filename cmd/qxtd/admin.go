package main

import (
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/qxtd/qxtd/api"
	"github.com/qxtd/qxtd/policy"
)

// `qxtd admin`: enterprises, users, whitelists, scope, packages and number
// overrides through the daemon's admin API (the daemon owns the store).
// This file holds the tree and the enterprise commands; admin_users.go
// and admin_whitelist.go the others.

// adminCLI is the state the admin commands share: the API flags and
// --json, persistent flags of `qxtd admin`.
type adminCLI struct {
	apiFlags
	json bool
}

func adminCmd() *cobra.Command {
	a := &adminCLI{}
	c := group(&cobra.Command{
		Use:   "admin <command> [args] [flags]",
		Short: "Enterprises, users, whitelists, scope, packages (qxtd admin help)",
	},
		group(&cobra.Command{Use: "enterprise", Short: "Enterprises (集团)"},
			a.entAdd(), a.entList(), a.entShow(), a.entSet(), a.entReceiptSecret(), a.entReceiptTest(), a.entReceiptRetry(), a.entDropHeld()),
		group(&cobra.Command{Use: "scope", Short: "National (全网) and off-net (外网) sending grants"},
			a.scope(true), a.scope(false)),
		group(&cobra.Command{Use: "package", Short: "Packages: the table, an enterprise's package"},
			a.packageSet(), a.packageList()),
		group(&cobra.Command{Use: "user", Short: "Users (SMPP logins) of an enterprise"},
			a.userAdd(), a.userList(), a.userShow(), a.userSet(), a.userPasswd(), a.userDelete(), a.userAPIKey()),
		group(&cobra.Command{Use: "whitelist", Short: "Whitelists: the pending queue, decisions (numbers the operator adds are approved at once)"},
			a.wlAdd(), a.wlImport(), a.wlList(), a.wlDecide(true), a.wlDecide(false), a.wlRemove(), a.wlPending()),
		group(&cobra.Command{Use: "optouts", Short: "Opt-out lists (numbers that replied TD, 回复TD退订)"},
			a.optOutExport(), a.optOutsOf(), a.optOutsAdd()),
		group(&cobra.Command{Use: "override", Short: "Number overrides (ported numbers, block corrections)"},
			a.ovList(), a.ovSet(), a.ovRemove()),
		a.signatureCmd(),
		a.applicationCmd(),
		a.recordsCmd(),
		group(&cobra.Command{Use: "daemon", Short: "The running daemon: health summary, log level, whom the token acts as"},
			a.daemonStatus(), a.daemonLogLevel(), a.daemonWhoami()),
	)
	pf := c.PersistentFlags()
	a.register(pf)
	pf.BoolVar(&a.json, "json", false, "print the API's JSON instead of tables")
	c.Long = "Administration through the daemon's admin API (the daemon owns the store).\n\n" +
		synopsis(c) + `
Without --password, user add and user passwd read the password from the first
line of standard input.`
	return c
}

// synopsis lists every command under c with its arguments, one a line:
// the summary `qxtd admin help` prints.
func synopsis(c *cobra.Command) string {
	var b strings.Builder
	var walk func(c *cobra.Command, prefix string)
	walk = func(c *cobra.Command, prefix string) {
		for _, s := range c.Commands() {
			if !s.IsAvailableCommand() || s.Name() == "help" {
				continue
			}
			if s.HasSubCommands() {
				walk(s, prefix+s.Name()+" ")
				continue
			}
			fmt.Fprintf(&b, "  %s%s\n", prefix, s.Use)
		}
	}
	walk(c, "")
	return b.String()
}

// leaf is an admin command that calls the API: run gets the client of the
// command line's flags and the positional arguments (between minPos and
// maxPos; maxPos -1: any).
func (a *adminCLI) leaf(use, short string, minPos, maxPos int, run func(c *cobra.Command, cl *api.Client, args []string) error) *cobra.Command {
	return &cobra.Command{
		Use:   use,
		Short: short,
		Args:  nargs(minPos, maxPos),
		RunE: func(c *cobra.Command, args []string) error {
			cl, err := a.client(c)
			if err != nil {
				return err
			}
			return run(c, cl, args)
		},
	}
}

// out prints v as JSON (--json) or calls human.
func (a *adminCLI) out(c *cobra.Command, v any, human func(w io.Writer)) error {
	if a.json {
		enc := json.NewEncoder(c.OutOrStdout())
		enc.SetIndent("", "  ")
		return enc.Encode(v)
	}
	tw := tabwriter.NewWriter(c.OutOrStdout(), 0, 4, 2, ' ', 0)
	human(tw)
	return tw.Flush()
}

// done reports a change that has no answer body.
func (a *adminCLI) done(c *cobra.Command, status string) error {
	return a.out(c, api.Status{Status: status}, func(w io.Writer) { fmt.Fprintln(w, status) })
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

func capText(e *api.Enterprise) string {
	if e.CapFen == 0 {
		return "none"
	}
	return e.CapYuan + " CNY"
}

func printEnterprise(w io.Writer, e *api.Enterprise) {
	fmt.Fprintf(w, "code\t%s\n", e.Code)
	fmt.Fprintf(w, "name\t%s\n", e.Name)
	sig := e.Signature
	if sig == "" {
		sig = "(none: cannot send)"
	}
	fmt.Fprintf(w, "signature\t%s\n", sig)
	fmt.Fprintf(w, "package\t%d\n", e.Package)
	fmt.Fprintf(w, "national\t%s\n", yesNo(e.National))
	fmt.Fprintf(w, "offnet\t%s\n", yesNo(e.OffNet))
	if e.ScopeNarrowed != nil {
		fmt.Fprintf(w, "scope_narrowed\t%s (a grant withdrawn: its messages accepted before and now out of scope are not sent)\n", e.ScopeNarrowed.Format(time.RFC3339))
	}
	fmt.Fprintf(w, "cap\t%s\n", capText(e))
	fmt.Fprintf(w, "no_overage\t%s\n", yesNo(e.NoOverage))
	tps := strconv.Itoa(e.TPS)
	if e.TPS == 0 {
		tps = "default"
	}
	fmt.Fprintf(w, "tps\t%s\n", tps)
	switch {
	case e.Disabled && e.HeldDropped != nil:
		fmt.Fprintf(w, "disabled\tyes (its waiting messages dropped at %s)\n", e.HeldDropped.Format(time.RFC3339))
	case e.Disabled:
		fmt.Fprintf(w, "disabled\tyes (its messages waiting to be sent are held until it is enabled)\n")
	default:
		fmt.Fprintf(w, "disabled\tno\n")
	}
	fmt.Fprintf(w, "no_whitelist\t%s\n", yesNo(e.NoWhitelist))
	if e.ServiceNumber == "" {
		fmt.Fprintf(w, "service_number\t(none: sources relayed as given)\n")
	} else {
		fmt.Fprintf(w, "service_number\t%s (+ up to %d extension digits)\n", e.ServiceNumber, e.ExtLen)
	}
	fmt.Fprintf(w, "receipt_url\t%s\n", orNone(e.ReceiptURL, "(none: receipts pushed only to a send's own receipt_url)"))
	fmt.Fprintf(w, "reply_url\t%s\n", orNone(e.ReplyURL, "(none: replies to receiver binds and GET /v1/inbox only)"))
	if e.ReceiptURL != "" || e.ReplyURL != "" {
		signed := "unsigned (no secret)"
		if e.ReceiptSig {
			signed = "signed"
		}
		fmt.Fprintf(w, "webhooks\t%s, up to %d receipts a POST, up to %d replies a POST\n", signed, e.ReceiptBatch, max(e.ReplyBatch, 1))
	}
	fmt.Fprintf(w, "updated\t%s\n", e.UpdatedAt.Local().Format(time.DateTime))
}

// orNone is v, or none when v is empty.
func orNone(v, none string) string {
	if v == "" {
		return none
	}
	return v
}

// --- enterprises ---

func (a *adminCLI) entAdd() *cobra.Command {
	var in api.NewEnterprise
	c := a.leaf("add CODE --name N --package P [--signature S] [--national] [--offnet] [--cap YUAN] [--no-overage] [--tps N] [--no-whitelist] [--service-number N --ext-len L]",
		"Create an enterprise", 1, 1, func(c *cobra.Command, cl *api.Client, args []string) error {
			in.Code = args[0]
			if in.Name == "" || in.Package == 0 {
				return usagef("enterprise add: --name and --package are required")
			}
			e, err := cl.CreateEnterprise(in)
			if err != nil {
				return err
			}
			return a.out(c, e, func(w io.Writer) { printEnterprise(w, e) })
		})
	fs := c.Flags()
	fs.StringVar(&in.Name, "name", "", "display name (required)")
	fs.StringVar(&in.Signature, "signature", "", "enterprise signature, 【…】")
	fs.IntVar(&in.Package, "package", 0, "package number (required)")
	fs.BoolVar(&in.National, "national", false, "grant national sending")
	fs.BoolVar(&in.OffNet, "offnet", false, "grant off-net sending")
	fs.StringVar(&in.CapYuan, "cap", "", "monthly spending cap in CNY")
	fs.BoolVar(&in.NoOverage, "no-overage", false, "no usage beyond the package")
	fs.IntVar(&in.TPS, "tps", 0, "submissions per second (0: default)")
	fs.IntVar(&in.MaxUsers, "max-users", 0, "users the enterprise's admin may have (0: the default, 50)")
	fs.BoolVar(&in.NoWhitelist, "no-whitelist", false, "exempt from the whitelist")
	fs.StringVar(&in.ServiceNumber, "service-number", "", "service number (接入号), the source of its messages")
	fs.IntVar(&in.ExtLen, "ext-len", 0, "extension digits a message may add to the service number")
	return c
}

func (a *adminCLI) entList() *cobra.Command {
	return a.leaf("list", "List the enterprises", 0, 0, func(c *cobra.Command, cl *api.Client, _ []string) error {
		list, err := cl.Enterprises()
		if err != nil {
			return err
		}
		return a.out(c, api.EnterpriseList{Enterprises: list}, func(w io.Writer) {
			fmt.Fprintln(w, "CODE\tNAME\tSIGNATURE\tPACKAGE\tNATIONAL\tOFFNET\tCAP\tNO_OVERAGE\tTPS\tDISABLED")
			for _, e := range list {
				fmt.Fprintf(w, "%s\t%s\t%s\t%d\t%s\t%s\t%s\t%s\t%d\t%s\n", e.Code, e.Name, e.Signature, e.Package,
					yesNo(e.National), yesNo(e.OffNet), capText(&e), yesNo(e.NoOverage), e.TPS, yesNo(e.Disabled))
			}
		})
	})
}

func (a *adminCLI) entShow() *cobra.Command {
	var month string
	c := a.leaf("show CODE [--month YYYY-MM]", "An enterprise with its users, whitelist and usage", 1, 1,
		func(c *cobra.Command, cl *api.Client, args []string) error {
			d, err := cl.Enterprise(args[0], month)
			if err != nil {
				return err
			}
			return a.out(c, d, func(w io.Writer) {
				printEnterprise(w, &d.Enterprise)
				if p := d.PackageInfo; p != nil {
					fmt.Fprintf(w, "package terms\t%s CNY/month, %d segments included, %s CNY per extra segment\n",
						policy.FormatFen(p.FeeFen), p.Included, policy.FormatFen(p.OverageFen))
				} else {
					fmt.Fprintf(w, "package terms\tpackage %d is not in the package table: sending refused\n", d.Enterprise.Package)
				}
				fmt.Fprintf(w, "users\t%d\n", d.Users)
				fmt.Fprintf(w, "whitelist\t%d approved, %d pending, %d rejected\n", d.Whitelist.Approved, d.Whitelist.Pending, d.Whitelist.Rejected)
				fmt.Fprintf(w, "optouts\t%d numbers\n", d.OptOuts)
				limit := "no limit"
				if d.Usage.Limit >= 0 {
					limit = fmt.Sprintf("limit %d", d.Usage.Limit)
				}
				fmt.Fprintf(w, "usage %s\t%d charged, %d reserved, %s\n", d.Usage.Month, d.Usage.Charged, d.Usage.Reserved, limit)
				printHookStatus(w, "receipts", d.Receipts)
				if r := d.Replies; d.Enterprise.ReplyURL != "" || r.Pending > 0 || r.Last != nil {
					printHookStatus(w, "replies", r)
				}
			})
		})
	c.Flags().StringVar(&month, "month", "", "billing month YYYY-MM (default: this month)")
	return c
}

// printHookStatus is the "receipts" (or "replies") line of enterprise
// show: what waits to be pushed, and how the last POST ended.
func printHookStatus(w io.Writer, kind string, st api.ReceiptStatus) {
	more := ""
	if st.PendingMore {
		more = "+"
	}
	line := fmt.Sprintf("%d%s pending, %d retrying", st.Pending, more, st.Retrying)
	if st.FirstDueAt != nil {
		line += ", the first due " + st.FirstDueAt.Format(time.RFC3339)
	}
	if l := st.Last; l != nil {
		outcome := "delivered"
		if !l.Delivered {
			outcome = "failed: " + l.Error
			if l.FailingSince != nil {
				outcome = "failed (failing since " + l.FailingSince.Format(time.RFC3339) + "): " + l.Error
			}
		}
		n := fmt.Sprintf("%d receipts", l.Receipts)
		switch {
		case kind == "replies" && l.Replies > 1:
			n = fmt.Sprintf("%d replies", l.Replies)
		case kind == "replies":
			n = "1 reply" // 0: a POST saved before reply batches, one reply
		case l.Receipts == 1:
			n = "1 receipt"
		}
		node := ""
		if l.Node != 0 {
			node = fmt.Sprintf(" by node %d", l.Node)
		}
		line += fmt.Sprintf("; last POST%s %s (%s) %s", node, l.At.Format(time.RFC3339), n, outcome)
	}
	if len(st.Nodes) > 1 {
		parts := make([]string, len(st.Nodes))
		for i, n := range st.Nodes {
			parts[i] = fmt.Sprintf("node %d: %d pending, %d retrying", n.Node, n.Pending, n.Retrying)
		}
		line += "; " + strings.Join(parts, "; ")
	}
	line += missingNote(st.Missing)
	fmt.Fprintf(w, "%s\t%s\n", kind, line)
}

// missingNote says which cluster nodes an answer leaves out ("" if none).
func missingNote(m api.Missing) string {
	switch {
	case !m.Partial:
		return ""
	case len(m.MissingNodes) == 0:
		return " (PARTIAL: the other nodes could not be asked)"
	}
	return fmt.Sprintf(" (PARTIAL: without node(s) %v)", m.MissingNodes)
}

func (a *adminCLI) entSet() *cobra.Command {
	var v struct {
		name, sig, capYuan, receiptURL, svc, rep  string
		pkg, tps, maxUsers, extLen, receiptBatch  int
		replyBatch                                int
		national, offnet, noOverage, disabled, nw bool
	}
	c := a.leaf("set CODE [--name N] [--signature S] [--package P] [--national=BOOL] [--offnet=BOOL] [--cap YUAN (0: none)] [--no-overage=BOOL] [--tps N] [--max-users N] [--disabled=BOOL] [--no-whitelist=BOOL] [--service-number N (\"\": none)] [--ext-len L] [--receipt-url URL] [--receipt-batch N] [--reply-url URL] [--reply-batch N]",
		"Change an enterprise", 1, 1, func(c *cobra.Command, cl *api.Client, args []string) error {
			p := api.EnterprisePatch{
				Name: given(c, "name", &v.name), Signature: given(c, "signature", &v.sig),
				Package: given(c, "package", &v.pkg), National: given(c, "national", &v.national),
				OffNet: given(c, "offnet", &v.offnet), CapYuan: given(c, "cap", &v.capYuan),
				NoOverage: given(c, "no-overage", &v.noOverage), TPS: given(c, "tps", &v.tps),
				MaxUsers: given(c, "max-users", &v.maxUsers), Disabled: given(c, "disabled", &v.disabled),
				NoWhitelist: given(c, "no-whitelist", &v.nw), ReceiptURL: given(c, "receipt-url", &v.receiptURL),
				ReceiptBatch: given(c, "receipt-batch", &v.receiptBatch), ReplyURL: given(c, "reply-url", &v.rep),
				ReplyBatch:    given(c, "reply-batch", &v.replyBatch),
				ServiceNumber: given(c, "service-number", &v.svc), ExtLen: given(c, "ext-len", &v.extLen),
			}
			if p == (api.EnterprisePatch{}) {
				return usagef("enterprise set: nothing to change")
			}
			return a.patchEnterprise(c, cl, args[0], p)
		})
	fs := c.Flags()
	fs.StringVar(&v.name, "name", "", "display name")
	fs.StringVar(&v.sig, "signature", "", "enterprise signature, 【…】")
	fs.IntVar(&v.pkg, "package", 0, "package number")
	fs.BoolVar(&v.national, "national", false, "national sending")
	fs.BoolVar(&v.offnet, "offnet", false, "off-net sending")
	fs.StringVar(&v.capYuan, "cap", "", "monthly spending cap in CNY, 0 = none")
	fs.BoolVar(&v.noOverage, "no-overage", false, "no usage beyond the package")
	fs.IntVar(&v.tps, "tps", 0, "submissions per second (0: default)")
	fs.IntVar(&v.maxUsers, "max-users", 0, "users the enterprise's admin may have (0: the default, 50)")
	fs.BoolVar(&v.disabled, "disabled", false, "disable the enterprise")
	fs.BoolVar(&v.nw, "no-whitelist", false, "exempt from the whitelist")
	fs.StringVar(&v.svc, "service-number", "", "service number (接入号); \"\" removes it")
	fs.IntVar(&v.extLen, "ext-len", 0, "extension digits a message may add to the service number")
	fs.StringVar(&v.receiptURL, "receipt-url", "", `receipt webhook of its HTTP sends (http/https; "" removes it)`)
	fs.StringVar(&v.rep, "reply-url", "", `where its replies (MO) are POSTed, signed as receipts are (http/https; "" removes it)`)
	fs.IntVar(&v.receiptBatch, "receipt-batch", 0, `receipts one webhook POST may carry (0 or 1: one, the body a receipt; up to 1000: {"receipts": [...]})`)
	fs.IntVar(&v.replyBatch, "reply-batch", 0, `replies one POST to the reply URL may carry (0 or 1: one, the body a reply; up to 1000: {"replies": [...]})`)
	return c
}

// entReceiptSecret sets or generates the secret that signs an
// enterprise's receipt webhooks; it is printed this once.
func (a *adminCLI) entReceiptSecret() *cobra.Command {
	var secret string
	c := a.leaf("receipt-secret CODE [--secret S]", "Set or generate the secret that signs receipt webhooks (printed once)", 1, 1,
		func(c *cobra.Command, cl *api.Client, args []string) error {
			rs, err := cl.SetReceiptSecret(args[0], secret)
			if err != nil {
				return err
			}
			fmt.Fprintln(c.OutOrStdout(), rs.Secret)
			if u := rs.PreviousUntil; u != nil {
				fmt.Fprintf(c.ErrOrStderr(), "the secret it replaced signs X-Qxtd-Signature-Previous until %s\n", u.Format(time.RFC3339))
			}
			return nil
		})
	c.Flags().StringVar(&secret, "secret", "", "the secret (16 to 128 bytes); none: a random one")
	return c
}

// entReceiptTest sends an enterprise's test receipt and prints what its
// endpoint did; it fails (exit 1) unless the endpoint answered 2xx, so
// that a script can check an endpoint.
func (a *adminCLI) entReceiptTest() *cobra.Command {
	var url string
	var reply bool
	c := a.leaf("receipt-test CODE [--url U] [--reply]", "Send one sample receipt (or reply) to the enterprise's webhook and print the answer", 1, 1,
		func(c *cobra.Command, cl *api.Client, args []string) error {
			kind := ""
			if reply {
				kind = "reply"
			}
			r, err := cl.TestReceipt(args[0], url, kind)
			if err != nil {
				return err
			}
			how := "unsigned"
			if r.Signed {
				how = "signed"
			}
			if r.Batched {
				how += ", a batch of one"
			}
			if !r.Delivered {
				return fmt.Errorf("%s: not delivered (HTTP %d, %.1f ms, %s): %s", r.URL, r.Status, r.DurationMS, how, r.Error)
			}
			fmt.Fprintf(c.OutOrStdout(), "%s: delivered, HTTP %d in %.1f ms (%s)\n", r.URL, r.Status, r.DurationMS, how)
			return nil
		})
	c.Flags().StringVar(&url, "url", "", "the endpoint (default: the enterprise's receipt_url, or reply_url with --reply)")
	c.Flags().BoolVar(&reply, "reply", false, "send a sample reply (MO) as the reply webhook POSTs one, not a receipt")
	return c
}

// entReceiptRetry makes an enterprise's receipts (or, with --reply, its
// replies) that wait for a later retry due now (its endpoint is mended).
func (a *adminCLI) entReceiptRetry() *cobra.Command {
	var reply bool
	c := a.leaf("receipt-retry CODE [--reply]", "Post the enterprise's receipts (or replies) that wait for a retry now", 1, 1,
		func(c *cobra.Command, cl *api.Client, args []string) error {
			kind, what := "", "receipts"
			if reply {
				kind, what = "reply", "replies"
			}
			r, err := cl.RetryReceipts(args[0], kind)
			if err != nil {
				return err
			}
			more := ""
			if r.More {
				more = "; more wait: run it again in a minute"
			}
			fmt.Fprintf(c.OutOrStdout(), "%d %s due now%s%s\n", r.Rescheduled, what, more, missingNote(r.Missing))
			return nil
		})
	c.Flags().BoolVar(&reply, "reply", false, "post the replies (MO) waiting for a retry of their POST to reply_url, not the receipts")
	return c
}

func (a *adminCLI) entDropHeld() *cobra.Command {
	return a.leaf("drop-held CODE", "Drop the messages a disabled enterprise holds: failed rejected account_disabled, never sent", 1, 1,
		func(c *cobra.Command, cl *api.Client, args []string) error {
			e, err := cl.DropHeld(args[0])
			if err != nil {
				return err
			}
			return a.out(c, e, func(w io.Writer) {
				fmt.Fprintf(w, "%s: its held messages are dropped (every node fails them within a minute, while it stays disabled)\n", e.Code)
			})
		})
}

// given is v when the flag name was given on the command line, else nil:
// a PATCH field that changes only what was asked for.
func given[T any](c *cobra.Command, name string, v *T) *T {
	if c.Flags().Changed(name) {
		return v
	}
	return nil
}

func (a *adminCLI) patchEnterprise(c *cobra.Command, cl *api.Client, code string, p api.EnterprisePatch) error {
	e, err := cl.UpdateEnterprise(code, p)
	if err != nil {
		return err
	}
	return a.out(c, e, func(w io.Writer) { printEnterprise(w, e) })
}

// scope is `scope grant` (grant) or `scope revoke`.
func (a *adminCLI) scope(grant bool) *cobra.Command {
	verb, short := "revoke", "Revoke national or off-net sending"
	if grant {
		verb, short = "grant", "Grant national or off-net sending"
	}
	return a.leaf(verb+" CODE national|offnet", short, 2, 2, func(c *cobra.Command, cl *api.Client, args []string) error {
		var p api.EnterprisePatch
		switch strings.ToLower(args[1]) {
		case "national":
			p.National = &grant
		case "offnet", "off-net":
			p.OffNet = &grant
		default:
			return usagef("scope %s: scope %q: want national or offnet", verb, args[1])
		}
		return a.patchEnterprise(c, cl, args[0], p)
	})
}

func (a *adminCLI) packageSet() *cobra.Command {
	return a.leaf("set CODE N", "Set an enterprise's package", 2, 2, func(c *cobra.Command, cl *api.Client, args []string) error {
		n, err := strconv.Atoi(args[1])
		if err != nil {
			return usagef("package set: package %q: want a number", args[1])
		}
		return a.patchEnterprise(c, cl, args[0], api.EnterprisePatch{Package: &n})
	})
}
