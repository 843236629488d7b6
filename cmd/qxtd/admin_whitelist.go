package main

import (
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/qxtd/qxtd/api"
	"github.com/qxtd/qxtd/policy"
	"github.com/qxtd/qxtd/sheet"
)

// --- whitelist ---

func printImport(w io.Writer, r *policy.ImportResult) {
	fmt.Fprintf(w, "rows %d: %d added, %d duplicates, %d errors", r.Rows, r.Added, r.Duplicates, len(r.Errors))
	if r.HeaderRow > 0 {
		fmt.Fprint(w, " (row 1 is a header)")
	}
	fmt.Fprintln(w)
	printRowErrors(w, r.Errors)
}

func printRowErrors(w io.Writer, errs []policy.RowError) {
	if len(errs) == 0 {
		return
	}
	fmt.Fprintln(w, "ROW\tVALUE\tREASON\tDETAIL")
	for _, e := range errs {
		fmt.Fprintf(w, "%d\t%q\t%s\t%s\n", e.Row, e.Value, e.Reason, e.Detail)
	}
}

func printBulk(w io.Writer, verb string, r *policy.BulkResult) {
	fmt.Fprintf(w, "%s %d, unchanged %d, not on the whitelist %d, errors %d\n", verb, r.Changed, r.Unchanged, len(r.NotFound), len(r.Errors))
	for _, n := range r.NotFound {
		fmt.Fprintf(w, "not on the whitelist:\t%s\n", n)
	}
	printRowErrors(w, r.Errors)
}

func (a *adminCLI) wlAdd() *cobra.Command {
	return a.leaf("add CODE NUMBER...", "Add numbers (approved at once)", 2, -1, func(c *cobra.Command, cl *api.Client, args []string) error {
		r, err := cl.AddWhitelist(args[0], args[1:])
		if err != nil {
			return err
		}
		return a.out(c, r, func(w io.Writer) { printImport(w, r) })
	})
}

func (a *adminCLI) wlImport() *cobra.Command {
	var format string
	c := a.leaf("import CODE FILE [--format csv|xlsx]", "Import numbers from column A of a CSV or XLSX file (format from the extension)", 2, 2,
		func(c *cobra.Command, cl *api.Client, args []string) error {
			var f sheet.Format
			switch strings.ToLower(format) {
			case "csv":
				f = sheet.CSV
			case "xlsx":
				f = sheet.XLSX
			case "":
				var ok bool
				if f, ok = sheet.FormatOf(args[1]); !ok || f == sheet.XLS {
					return usagef("whitelist import: %s: unknown file type; give --format csv|xlsx", args[1])
				}
			default:
				return usagef("whitelist import: --format %q: want csv or xlsx", format)
			}
			file, err := os.Open(args[1])
			if err != nil {
				return err
			}
			defer file.Close()
			r, err := cl.ImportWhitelist(c.Context(), args[0], f, file)
			if err != nil {
				return err
			}
			return a.out(c, r, func(w io.Writer) { printImport(w, r) })
		})
	c.Flags().StringVar(&format, "format", "", "csv or xlsx (default: from the file name)")
	return c
}

func (a *adminCLI) wlList() *cobra.Command {
	var state, after string
	var limit int
	var all bool
	c := a.leaf("list CODE [--state pending|approved|rejected] [--after NUMBER] [--limit N] [--all]", "List an enterprise's whitelist", 1, 1,
		func(c *cobra.Command, cl *api.Client, args []string) error {
			page, err := cl.ListWhitelist(args[0], state, after, limit)
			if err != nil {
				return err
			}
			for all && page.Next != "" {
				next, err := cl.ListWhitelist(args[0], state, page.Next, limit)
				if err != nil {
					return err
				}
				page.Entries, page.Next = append(page.Entries, next.Entries...), next.Next
			}
			return a.out(c, page, func(w io.Writer) {
				fmt.Fprintln(w, "NUMBER\tSTATE\tADDED\tBY\tDECIDED\tBY")
				for _, e := range page.Entries {
					decided := ""
					if !e.DecidedAt.IsZero() {
						decided = e.DecidedAt.Local().Format(time.DateTime)
					}
					fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\n", e.Number, e.State, e.AddedAt.Local().Format(time.DateTime), e.AddedBy, decided, e.DecidedBy)
				}
				if page.Next != "" {
					fmt.Fprintf(w, "more: --after %s (or --all)\n", page.Next)
				}
			})
		})
	fs := c.Flags()
	fs.StringVar(&state, "state", "", "pending, approved or rejected (default: all)")
	fs.StringVar(&after, "after", "", "start after this number (the previous page's next)")
	fs.IntVar(&limit, "limit", 0, "entries per page (default 100, at most 1000)")
	fs.BoolVar(&all, "all", false, "fetch every page")
	return c
}

// wlPending is the account manager's queue: pending entries of every
// enterprise, oldest first.
func (a *adminCLI) wlPending() *cobra.Command {
	var after string
	var limit int
	var all bool
	c := a.leaf("pending [--after CURSOR] [--limit N] [--all]", "List the entries of every enterprise awaiting approval, oldest first", 0, 0,
		func(c *cobra.Command, cl *api.Client, _ []string) error {
			page, err := cl.ListPending(after, limit)
			if err != nil {
				return err
			}
			for all && page.Next != "" {
				next, err := cl.ListPending(page.Next, limit)
				if err != nil {
					return err
				}
				page.Entries, page.Next = append(page.Entries, next.Entries...), next.Next
			}
			return a.out(c, page, func(w io.Writer) {
				fmt.Fprintln(w, "ENTERPRISE\tNUMBER\tADDED\tBY\tWAITING")
				now := time.Now()
				for _, e := range page.Entries {
					fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\n", e.Enterprise, e.Number, e.AddedAt.Local().Format(time.DateTime), e.AddedBy,
						now.Sub(e.AddedAt).Truncate(time.Second))
				}
				if page.Next != "" {
					fmt.Fprintf(w, "more: --after %s (or --all)\n", page.Next)
				}
			})
		})
	fs := c.Flags()
	fs.StringVar(&after, "after", "", "start after this cursor (the previous page's next)")
	fs.IntVar(&limit, "limit", 0, "entries per page (default 100, at most 1000)")
	fs.BoolVar(&all, "all", false, "fetch every page")
	return c
}

// wlDecide is `whitelist approve` (approve) or `whitelist reject`.
func (a *adminCLI) wlDecide(approve bool) *cobra.Command {
	var allPending bool
	var reason string
	name, verb, use := "reject", "rejected", " --reason R"
	if approve {
		name, verb, use = "approve", "approved", ""
	}
	c := a.leaf(name+" CODE (NUMBER... | --all-pending)"+use, "Decide pending entries: "+verb, 1, -1,
		func(c *cobra.Command, cl *api.Client, args []string) error {
			numbers := args[1:]
			if allPending == (len(numbers) > 0) {
				return usagef("whitelist %s: give numbers or --all-pending", name)
			}
			if !approve && strings.TrimSpace(reason) == "" {
				return usagef("whitelist reject: give --reason (the enterprise sees it)")
			}
			var r *policy.BulkResult
			var err error
			if approve {
				r, err = cl.Approve(args[0], numbers, allPending)
			} else {
				r, err = cl.Reject(args[0], reason, numbers, allPending)
			}
			if err != nil {
				return err
			}
			return a.out(c, r, func(w io.Writer) { printBulk(w, verb, r) })
		})
	c.Flags().BoolVar(&allPending, "all-pending", false, "decide every pending entry")
	if !approve {
		c.Flags().StringVar(&reason, "reason", "", "why the numbers are rejected (shown to the enterprise)")
	}
	return c
}

func (a *adminCLI) wlRemove() *cobra.Command {
	return a.leaf("remove CODE NUMBER...", "Remove numbers in any state", 2, -1, func(c *cobra.Command, cl *api.Client, args []string) error {
		r, err := cl.RemoveWhitelist(args[0], args[1:])
		if err != nil {
			return err
		}
		return a.out(c, r, func(w io.Writer) { printBulk(w, "removed", r) })
	})
}

// --- number overrides ---

func (a *adminCLI) ovList() *cobra.Command {
	return a.leaf("list", "List the number overrides", 0, 0, func(c *cobra.Command, cl *api.Client, _ []string) error {
		ovs, err := cl.Overrides()
		if err != nil {
			return err
		}
		return a.out(c, api.OverrideList{Overrides: ovs}, func(w io.Writer) {
			fmt.Fprintln(w, "PREFIX\tCARRIER\tPROVINCE")
			for _, o := range ovs {
				carrier, prov := "(library)", "(library)"
				if o.Carrier != policy.CarrierUnknown {
					carrier = o.Carrier.String()
				}
				if o.Province != "" {
					prov = o.Province
				}
				fmt.Fprintf(w, "%s\t%s\t%s\n", o.Prefix, carrier, prov)
			}
		})
	})
}

func (a *adminCLI) ovSet() *cobra.Command {
	var in api.OverrideSet
	c := a.leaf("set PREFIX [--carrier china_mobile|china_unicom|china_telecom|china_broadnet] [--province P]",
		"Add or replace the override of a number or prefix", 1, 1, func(c *cobra.Command, cl *api.Client, args []string) error {
			if in.Carrier == "" && in.Province == "" {
				return usagef("override set: give --carrier, --province or both")
			}
			if err := cl.SetOverride(args[0], in); err != nil {
				return err
			}
			return a.done(c, "override set for "+args[0])
		})
	fs := c.Flags()
	fs.StringVar(&in.Carrier, "carrier", "", "china_mobile, china_unicom, china_telecom or china_broadnet")
	fs.StringVar(&in.Province, "province", "", "province, e.g. 广东省")
	return c
}

func (a *adminCLI) ovRemove() *cobra.Command {
	return a.leaf("remove PREFIX", "Remove the override of a prefix", 1, 1, func(c *cobra.Command, cl *api.Client, args []string) error {
		if err := cl.RemoveOverride(args[0]); err != nil {
			return err
		}
		return a.done(c, "override removed for "+args[0])
	})
}
