package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/qxtd/qxtd/api"
	"github.com/qxtd/qxtd/policy"
	"github.com/qxtd/qxtd/queue"
)

// The operations commands: `qxtd export dlr`, `qxtd bill`, `qxtd backup`.
// Like `qxtd admin` they talk to the running daemon's admin API through
// api.Client (the daemon owns the bbolt file); api/OPS.md describes what
// they return.

// apiFlags are the flags of every command that calls the admin API.
type apiFlags struct {
	base, token string
}

func (o *apiFlags) register(fs *pflag.FlagSet) {
	fs.StringVar(&o.base, "api", "http://127.0.0.1:8080", "the daemon's HTTP address")
	fs.StringVar(&o.token, "token", "", "the operator token, http.admin_token or an account manager's (default $QXTD_ADMIN_TOKEN)")
}

// client returns the admin API client of c's flags; the token comes from
// $QXTD_ADMIN_TOKEN unless --token is given.
func (o *apiFlags) client(c *cobra.Command) (*api.Client, error) {
	token := o.token
	if !c.Flags().Changed("token") {
		token = os.Getenv("QXTD_ADMIN_TOKEN")
	}
	if token == "" {
		return nil, usagef("no admin token: give --token or set QXTD_ADMIN_TOKEN")
	}
	return &api.Client{Base: o.base, Token: token}, nil
}

// opsContext ends on SIGINT / SIGTERM, so that a cut-short command removes
// its temporary file.
func opsContext(parent context.Context) (context.Context, context.CancelFunc) {
	return signal.NotifyContext(parent, os.Interrupt, syscall.SIGTERM)
}

// writeAtomically calls write with path.tmp open for writing; if write
// succeeds the file is fsynced, renamed to path and the directory fsynced,
// so that path is either the old file or the whole new one. On any error
// path.tmp is removed.
func writeAtomically(path string, write func(f *os.File) error) (err error) {
	f, err := os.OpenFile(path+".tmp", os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	if err := write(f); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(f.Name(), path); err != nil {
		return err
	}
	return queue.SyncDir(filepath.Dir(path))
}

// exportCmd is `qxtd export dlr`.
func exportCmd() *cobra.Command {
	var af apiFlags
	var from, to, ent, format, out, after, saveCursor string
	dlr := &cobra.Command{
		Use:   "dlr (--from DATE --to DATE | --after CURSOR | --save-cursor FILE) [--enterprise CODE] [--format csv|jsonl] [--out FILE]",
		Short: "One row per segment of the messages accepted in [from, to), or final since a cursor",
		Long: `One row per segment of the messages accepted in [from, to), CSV or JSON Lines;
to standard output, or to FILE (written as FILE.tmp, renamed when complete).

DATE is YYYY-MM-DD (midnight in Asia/Shanghai) or RFC 3339.

Incremental (for billing jobs): --after CURSOR exports the segments whose final
state was reached after the cursor ("" for the start), and prints the next
cursor on standard error. --save-cursor FILE keeps the cursor in FILE: the
export starts after the cursor FILE holds (from the start if there is no
FILE; --after overrides it), and FILE gets the next cursor only once the
export is complete (and, with --out, renamed into place), so a cron job run
twice never gets a row twice nor misses one.`,
		Args: nargs(0, 0),
		RunE: func(c *cobra.Command, _ []string) error {
			if format != "csv" && format != "jsonl" {
				return usagef("--format %q: want csv or jsonl", format)
			}
			q := api.ExportQuery{Enterprise: ent, Format: format}
			incremental := c.Flags().Changed("after") || saveCursor != ""
			if incremental && (from != "" || to != "") {
				return usagef("--after / --save-cursor and --from / --to exclude each other")
			}
			if incremental && !c.Flags().Changed("after") {
				b, err := os.ReadFile(saveCursor)
				switch {
				case err == nil:
					after = strings.TrimSpace(string(b))
				case !errors.Is(err, os.ErrNotExist):
					return fmt.Errorf("--save-cursor: %w", err)
				}
			}
			for _, b := range []struct {
				name, v string
				t       *time.Time
			}{{"from", from, &q.From}, {"to", to, &q.To}} {
				if incremental {
					break
				}
				if b.v == "" {
					return usagef("--%s is required (or --after / --save-cursor)", b.name)
				}
				t, err := api.ParseWindowTime(b.v)
				if err != nil {
					return usagef("--%s: %v", b.name, err)
				}
				*b.t = t
			}
			cl, err := af.client(c)
			if err != nil {
				return err
			}
			ctx, cancel := opsContext(c.Context())
			defer cancel()
			var res api.ExportResult
			export := func(w io.Writer) (err error) {
				if incremental {
					res, err = cl.ExportDLRAfter(ctx, after, q, w)
				} else {
					res.Rows, res.Bytes, err = cl.ExportDLR(ctx, q, w)
				}
				return err
			}
			if out == "" {
				err = export(c.OutOrStdout())
			} else {
				err = writeAtomically(out, func(f *os.File) error { return export(f) })
			}
			if err != nil {
				return err
			}
			stderr := c.ErrOrStderr()
			if out != "" {
				fmt.Fprintf(stderr, "exported %d rows (%d bytes) to %s\n", res.Rows, res.Bytes, out)
			}
			if !incremental {
				return nil
			}
			if res.Purged > 0 {
				fmt.Fprintf(stderr, "warning: %d segments final after cursor %q were purged by retention before this export: poll more often than store.retention\n", res.Purged, after)
			}
			if saveCursor != "" {
				err := writeAtomically(saveCursor, func(f *os.File) error {
					_, err := fmt.Fprintln(f, res.Next)
					return err
				})
				if err != nil {
					return fmt.Errorf("export complete, but the cursor %s was not saved: %w", res.Next, err)
				}
			}
			fmt.Fprintf(stderr, "next cursor: %s\n", res.Next)
			return nil
		},
	}
	fs := dlr.Flags()
	fs.StringVar(&from, "from", "", "start of the window (YYYY-MM-DD or RFC 3339), inclusive")
	fs.StringVar(&to, "to", "", "end of the window, exclusive")
	fs.StringVar(&after, "after", "", `export the segments final after this cursor ("" for the start)`)
	fs.StringVar(&saveCursor, "save-cursor", "", "read the cursor from FILE and save the next one there once the export is complete")
	fs.StringVar(&ent, "enterprise", "", "only this enterprise's messages")
	fs.StringVar(&format, "format", "csv", "csv or jsonl")
	fs.StringVar(&out, "out", "", "output file (default: standard output)")
	c := group(&cobra.Command{Use: "export", Short: "Export delivery receipts (qxtd export dlr)"}, dlr)
	af.register(c.PersistentFlags())
	return c
}

// billCmd is `qxtd bill`.
func billCmd() *cobra.Command {
	var af apiFlags
	var month, ent string
	var asJSON bool
	c := &cobra.Command{
		Use:   "bill --month YYYY-MM [--enterprise CODE] [--json]",
		Short: "The monthly bill per enterprise, in yuan",
		Long: `The month's bill per enterprise (Asia/Shanghai months), in yuan; --json prints
the API's JSON, money in fen. ` + "`qxtd bill 2026-11`" + ` reads as --month 2026-11.`,
		Args: nargs(0, 1),
		RunE: func(c *cobra.Command, args []string) error {
			if len(args) == 1 {
				if month != "" {
					return usagef("unexpected argument %q: --month is given", args[0])
				}
				month = args[0]
			}
			if month == "" {
				return usagef("--month is required")
			}
			if _, err := api.ParseMonth(month); err != nil {
				return usagef("--month: %v", err)
			}
			cl, err := af.client(c)
			if err != nil {
				return err
			}
			ctx, cancel := opsContext(c.Context())
			defer cancel()
			bills, err := cl.Bill(ctx, month, ent)
			if err != nil {
				return err
			}
			if asJSON {
				enc := json.NewEncoder(c.OutOrStdout())
				enc.SetIndent("", "  ")
				if err := enc.Encode(bills); err != nil {
					return err
				}
				return partialBill(bills)
			}
			printBills(c.OutOrStdout(), month, bills)
			return partialBill(bills)
		},
	}
	fs := c.Flags()
	fs.StringVar(&month, "month", "", "billing month, YYYY-MM (Asia/Shanghai)")
	fs.StringVar(&ent, "enterprise", "", "only this enterprise")
	fs.BoolVar(&asJSON, "json", false, "print the API's JSON (money in fen)")
	af.register(fs)
	return c
}

// printBills prints bills as a table in yuan. The name comes last: the
// table aligns by characters, and Chinese names are twice as wide.
func printBills(w io.Writer, month string, bills []api.BillLine) {
	fmt.Fprintf(w, "bill for %s (Asia/Shanghai), amounts in yuan\n\n", month)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ENTERPRISE\tPACKAGE\tFEE\tINCLUDED\tDELIVERED\tOVERAGE\tRATE\tOVERAGE AMT\tTOTAL\tPENDING\tNAME")
	var total, delivered, pending int64
	var notes []string
	for _, b := range bills {
		pkg, rate := "-", "-"
		if b.Package != 0 {
			pkg = strconv.Itoa(b.Package)
		}
		if b.Error == "" {
			rate = policy.FormatFen(b.OverageRateFen)
		} else {
			notes = append(notes, fmt.Sprintf("%s: %s", b.Enterprise, b.Error))
		}
		if b.Purged > 0 {
			notes = append(notes, fmt.Sprintf("%s: %d delivered segments purged by retention (billed, not in the export)", b.Enterprise, b.Purged))
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\t%d\t%s\t%s\t%s\t%d\t%s\n", b.Enterprise, pkg, b.FeeYuan, b.Included,
			b.Delivered, b.Overage, rate, b.OverageYuan, b.TotalYuan, b.Pending, b.Name)
		total += b.TotalFen
		delivered += b.Delivered
		pending += b.Pending
	}
	fmt.Fprintf(tw, "TOTAL\t\t\t\t%d\t\t\t\t%s\t%d\n", delivered, policy.FormatFen(total), pending)
	tw.Flush()
	if pending > 0 {
		notes = append(notes, fmt.Sprintf("segments still in flight: %d; the bill grows if they are delivered", pending))
	}
	if len(notes) > 0 {
		fmt.Fprintln(w)
		for _, n := range notes {
			fmt.Fprintln(w, "note:", n)
		}
	}
}

// partialBill is the error of a bill that lacks some cluster node's usage
// (api.Missing): printed, but the command fails, so that no job bills it.
func partialBill(bills []api.BillLine) error {
	for _, b := range bills {
		if b.Partial {
			return fmt.Errorf("the bill is partial: the usage of cluster nodes %v is missing (down or not answering), its amounts are too low; ask again once they are back", b.MissingNodes)
		}
	}
	return nil
}

// backupCmd is `qxtd backup FILE`.
func backupCmd() *cobra.Command {
	var af apiFlags
	c := &cobra.Command{
		Use:   "backup FILE",
		Short: "A consistent copy of the running daemon's store",
		Long: `A consistent copy of the running daemon's store: written to FILE.tmp,
fsynced, verified, renamed to FILE.`,
		Args: nargs(1, 1),
		RunE: func(c *cobra.Command, args []string) error {
			path := args[0]
			cl, err := af.client(c)
			if err != nil {
				return err
			}
			ctx, cancel := opsContext(c.Context())
			defer cancel()
			start := time.Now()
			var n int64
			err = writeAtomically(path, func(f *os.File) error {
				if n, err = cl.Backup(ctx, f); err != nil {
					return err
				}
				if err := f.Sync(); err != nil {
					return err
				}
				if err := queue.VerifyBackup(f.Name()); err != nil {
					return fmt.Errorf("backup received but unusable: %w", err)
				}
				return nil
			})
			if err != nil {
				return err
			}
			fmt.Fprintf(c.OutOrStdout(), "backup: %d bytes written to %s in %v (verified)\n", n, path, time.Since(start).Round(time.Millisecond))
			return nil
		},
	}
	af.register(c.Flags())
	return c
}
