package main

import (
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"

	"github.com/qxtd/qxtd/api"
)

// --- application (开户申请): the account manager's queue of applications ---

func (a *adminCLI) applicationCmd() *cobra.Command {
	return group(&cobra.Command{Use: "application", Short: "Applications for an account (开户申请): approve or reject"},
		a.appList(), a.appShow(), a.appApprove(), a.appReject())
}

func printApplication(w io.Writer, p *api.Application) {
	fmt.Fprintf(w, "number\t%s\n", p.Number)
	fmt.Fprintf(w, "state\t%s\n", p.State)
	if p.Reason != "" {
		fmt.Fprintf(w, "reason\t%s\n", p.Reason)
	}
	fmt.Fprintf(w, "group code\t%s\n", p.GroupCode)
	fmt.Fprintf(w, "name\t%s\n", p.Name)
	fmt.Fprintf(w, "contact mobile\t%s\n", p.ContactMobile)
	fmt.Fprintf(w, "package\t%d\n", p.Package)
	fmt.Fprintf(w, "signature\t%s\n", p.Signature)
	fmt.Fprintf(w, "applied\t%s\n", p.CreatedAt.Format(time.RFC3339))
	if p.DecidedAt != nil {
		fmt.Fprintf(w, "decided\t%s by %s\n", p.DecidedAt.Format(time.RFC3339), p.DecidedBy)
	}
	if p.AdminSystemID != "" {
		fmt.Fprintf(w, "admin\t%s\n", p.AdminSystemID)
	}
}

func (a *adminCLI) appList() *cobra.Command {
	var state string
	var limit int
	c := a.leaf("list [--state pending|approved|rejected|all] [--limit N]", "List applications, oldest first (pending by default)", 0, 0,
		func(c *cobra.Command, cl *api.Client, _ []string) error {
			apps, err := cl.Applications(state, limit)
			if err != nil {
				return err
			}
			return a.out(c, apps, func(w io.Writer) {
				fmt.Fprintln(w, "NUMBER\tSTATE\tGROUP_CODE\tNAME\tPACKAGE\tSIGNATURE\tAPPLIED")
				for _, p := range apps {
					fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%d\t%s\t%s\n", p.Number, p.State, p.GroupCode, p.Name, p.Package,
						p.Signature, p.CreatedAt.Format(time.RFC3339))
				}
			})
		})
	c.Flags().StringVar(&state, "state", "pending", "pending, approved, rejected or all")
	c.Flags().IntVar(&limit, "limit", 0, "at most this many (default 100, at most 1000)")
	return c
}

func (a *adminCLI) appShow() *cobra.Command {
	return a.leaf("show NUMBER", "Show an application", 1, 1, func(c *cobra.Command, cl *api.Client, args []string) error {
		p, err := cl.Application(args[0])
		if err != nil {
			return err
		}
		return a.out(c, p, func(w io.Writer) { printApplication(w, p) })
	})
}

func (a *adminCLI) appApprove() *cobra.Command {
	var systemID string
	c := a.leaf("approve NUMBER [--system-id ID]",
		"Approve: create the enterprise and its admin user, whose first password goes by SMS to the contact mobile", 1, 1,
		func(c *cobra.Command, cl *api.Client, args []string) error {
			r, err := cl.ApproveApplication(args[0], systemID)
			if err != nil {
				return err
			}
			return a.out(c, r, func(w io.Writer) {
				printApplication(w, &r.Application)
				if r.PasswordSent {
					fmt.Fprintln(w, "password\tsent by SMS to the contact mobile")
				} else {
					fmt.Fprintln(w, "password\tNOT SENT (the SMS failed): reset it with POST /admin/v1/password-reset")
				}
			})
		})
	c.Flags().StringVar(&systemID, "system-id", "", "the admin user's system_id (default: the group code)")
	return c
}

func (a *adminCLI) appReject() *cobra.Command {
	var reason string
	c := a.leaf("reject NUMBER --reason TEXT", "Reject, with a reason the applicant sees", 1, 1,
		func(c *cobra.Command, cl *api.Client, args []string) error {
			if reason == "" {
				return usagef("application reject: --reason is required")
			}
			p, err := cl.RejectApplication(args[0], reason)
			if err != nil {
				return err
			}
			return a.out(c, p, func(w io.Writer) { printApplication(w, p) })
		})
	c.Flags().StringVar(&reason, "reason", "", "why (shown to the applicant, 1–200 characters)")
	return c
}
