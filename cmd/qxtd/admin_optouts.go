package main

import (
	"fmt"
	"io"
	"strconv"

	"github.com/spf13/cobra"

	"github.com/qxtd/qxtd/api"
)

// --- opt-outs (回复TD退订) ---

func (a *adminCLI) optOutExport() *cobra.Command {
	var code, format string
	c := a.leaf("export [--enterprise CODE] [--format csv|json]", "Export the opt-out lists (every enterprise's without --enterprise) to standard output", 0, 0,
		func(c *cobra.Command, cl *api.Client, _ []string) error {
			if format != "csv" && format != "json" {
				return usagef("optouts export: --format %q: want csv or json", format)
			}
			return cl.ExportOptOuts(c.Context(), code, format, c.OutOrStdout())
		})
	c.Flags().StringVar(&code, "enterprise", "", "only this enterprise's list")
	c.Flags().StringVar(&format, "format", "csv", "csv or json")
	return c
}

// optOutsOf lists one number's entries on every enterprise's opt-out
// list: with records trace --replies, what a handset owner who says "I
// replied TD and still get messages" is answered from.
func (a *adminCLI) optOutsOf() *cobra.Command {
	return a.leaf("of NUMBER", "List the enterprises whose opt-out list holds a number (a whole mobile number, any form)", 1, 1,
		func(c *cobra.Command, cl *api.Client, args []string) error {
			entries, err := cl.OptOutsOf(args[0])
			if err != nil {
				return err
			}
			return a.out(c, entries, func(w io.Writer) {
				if len(entries) == 0 {
					fmt.Fprintf(w, "%s is on no enterprise's opt-out list\n", args[0])
					return
				}
				fmt.Fprintln(w, "ENTERPRISE\tNUMBER\tOPTED OUT\tBY")
				for _, e := range entries {
					// A reply's id, or who at the enterprise added it by hand.
					by := "reply " + strconv.FormatUint(e.MOID, 10)
					switch {
					case e.ByOperator:
						by = "operator"
					case e.By != "":
						by = "hand: " + e.By
					}
					fmt.Fprintf(w, "%s\t%s\t%s\t%s\n", e.Enterprise, e.Number, localTime(e.At), by)
				}
			})
		})
}

// optOutsAdd puts numbers on an enterprise's opt-out list: a complaint
// about its messages that reached the operator (records trace finds who
// sent to the number).
func (a *adminCLI) optOutsAdd() *cobra.Command {
	return a.leaf("add CODE NUMBER...", "Put numbers on an enterprise's opt-out list (its sends to them are refused, its waiting ones not sent)", 2, -1,
		func(c *cobra.Command, cl *api.Client, args []string) error {
			r, err := cl.AddOptOuts(args[0], args[1:])
			if err != nil {
				return err
			}
			return a.out(c, r, func(w io.Writer) { printImport(w, r) })
		})
}
