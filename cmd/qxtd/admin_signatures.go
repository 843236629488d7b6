package main

import (
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"

	"github.com/qxtd/qxtd/api"
	"github.com/qxtd/qxtd/policy"
)

// `qxtd admin signature`: the account manager's queue of enterprise
// signature change requests (FAQ 7).

func (a *adminCLI) signatureCmd() *cobra.Command {
	return group(&cobra.Command{Use: "signature", Short: "Enterprise signature change requests"},
		a.sigPending(), a.sigDecide(true), a.sigDecide(false))
}

func printSignatureRequests(w io.Writer, reqs []policy.SignatureRequest) {
	fmt.Fprintln(w, "ID\tENTERPRISE\tREQUESTED\tCURRENT\tSTATE\tBY\tAT")
	for _, r := range reqs {
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.ID, r.Enterprise, r.Signature, r.Previous, r.State,
			r.RequestedBy, r.RequestedAt.Local().Format(time.DateTime))
	}
}

func (a *adminCLI) sigPending() *cobra.Command {
	var enterprise, state string
	c := a.leaf("pending [--enterprise CODE] [--state S]", "Requests waiting for a decision (--state: another state, or all)", 0, 0,
		func(c *cobra.Command, cl *api.Client, _ []string) error {
			if state == "all" {
				state = ""
			}
			reqs, err := cl.SignatureRequests(state, enterprise)
			if err != nil {
				return err
			}
			return a.out(c, api.SignatureRequestList{Requests: reqs}, func(w io.Writer) { printSignatureRequests(w, reqs) })
		})
	c.Flags().StringVar(&enterprise, "enterprise", "", "only this enterprise's requests")
	c.Flags().StringVar(&state, "state", policy.SignaturePending, "pending, approved, rejected, superseded or all")
	return c
}

func (a *adminCLI) sigDecide(approve bool) *cobra.Command {
	var reason string
	use, short := "reject ID --reason R", "Reject a request (the signature stays)"
	if approve {
		use, short = "approve ID", "Approve a request: the enterprise's signature changes at once"
	}
	c := a.leaf(use, short, 1, 1, func(c *cobra.Command, cl *api.Client, args []string) error {
		if !approve && reason == "" {
			return usagef("signature reject: --reason is required")
		}
		r, err := cl.DecideSignature(args[0], approve, reason)
		if err != nil {
			return err
		}
		return a.out(c, r, func(w io.Writer) { printSignatureRequests(w, []policy.SignatureRequest{*r}) })
	})
	if !approve {
		c.Flags().StringVar(&reason, "reason", "", "why (shown to the enterprise; required)")
	}
	return c
}
