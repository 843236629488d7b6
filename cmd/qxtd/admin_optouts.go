package main

import (
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
