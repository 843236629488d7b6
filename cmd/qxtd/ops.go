package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/qxtd/qxtd/api"
	"github.com/qxtd/qxtd/policy"
)

// The operations commands: `qxtd export dlr`, `qxtd bill`, `qxtd backup`.
// Like `qxtd admin` they talk to the running daemon's admin API (the
// daemon owns the bbolt file); api/OPS.md describes what they return.

const opsUsage = `usage:
  qxtd export dlr --from DATE --to DATE [--enterprise CODE] [--format csv|jsonl] [--out FILE]
      one row per segment of the messages accepted in [from, to); to standard
      output, or to FILE (written as FILE.tmp, renamed when complete)
  qxtd bill --month YYYY-MM [--enterprise CODE] [--json]
      the month's bill per enterprise, in yuan (--json: the API's JSON, money in fen)
  qxtd backup FILE
      a consistent copy of the daemon's store (FILE.tmp, fsync, verified, renamed)

flags, anywhere on the line:
  --api URL    the daemon's HTTP address (default http://127.0.0.1:8080)
  --token T    the operator token, http.admin_token (default $QXTD_ADMIN_TOKEN)

DATE is YYYY-MM-DD (midnight in Asia/Shanghai) or RFC 3339.
Exit status: 0 done, 1 refused by the API, unreachable or incomplete, 2 bad usage.
`

// opsCLI holds the common flags and the outputs of one command.
type opsCLI struct {
	name           string
	api, token     string
	stdout, stderr io.Writer
	hc             *http.Client
}

// opsUsageError is a command-line mistake (exit status 2).
type opsUsageError string

func (e opsUsageError) Error() string { return string(e) }

func newOpsCLI(name string, stdout, stderr io.Writer) *opsCLI {
	return &opsCLI{name: name, api: "http://127.0.0.1:8080", token: os.Getenv("QXTD_ADMIN_TOKEN"),
		stdout: stdout, stderr: stderr,
		// No overall timeout: exports and backups take as long as they take.
		hc: &http.Client{Transport: &http.Transport{Proxy: http.ProxyFromEnvironment}}}
}

// flagSet returns a flag set with the common flags bound to c.
func (c *opsCLI) flagSet() *flag.FlagSet {
	fs := flag.NewFlagSet(c.name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.StringVar(&c.api, "api", c.api, "admin API base URL")
	fs.StringVar(&c.token, "token", c.token, "operator token")
	return fs
}

// parse parses flags and positional arguments in any order.
func (c *opsCLI) parse(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, err
			}
			return nil, opsUsageError(err.Error())
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return pos, nil
		}
		if n := len(args) - len(rest); n > 0 && args[n-1] == "--" {
			return append(pos, rest...), nil
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}

func (c *opsCLI) exit(err error) int {
	var ue opsUsageError
	var ae *api.APIError
	switch {
	case err == nil:
		return 0
	case errors.Is(err, flag.ErrHelp):
		fmt.Fprint(c.stdout, opsUsage)
		return 0
	case errors.As(err, &ue):
		fmt.Fprintf(c.stderr, "qxtd %s: %s\n%s", c.name, ue, opsUsage)
		return 2
	case errors.As(err, &ae):
		fmt.Fprintf(c.stderr, "qxtd %s: %s: %s\n", c.name, ae.Reason, ae.Message)
		return 1
	}
	fmt.Fprintf(c.stderr, "qxtd %s: %v\n", c.name, err)
	return 1
}

// get calls the admin API; a non-2xx answer becomes an *api.APIError. The
// caller closes the body of a successful answer.
func (c *opsCLI) get(ctx context.Context, path string, q url.Values) (*http.Response, error) {
	if c.token == "" {
		return nil, opsUsageError("no admin token: give --token or set QXTD_ADMIN_TOKEN")
	}
	u := strings.TrimSuffix(c.api, "/") + path
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, opsUsageError("--api: " + err.Error())
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode/100 == 2 {
		return resp, nil
	}
	defer resp.Body.Close()
	return nil, api.ReadAPIError(resp)
}

// opsContext ends on SIGINT / SIGTERM, so that a cut-short command removes
// its temporary file.
func opsContext() (context.Context, context.CancelFunc) {
	return signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
}

// opsCreateTemp creates path.tmp for writing.
func opsCreateTemp(path string) (*os.File, error) {
	return os.OpenFile(path+".tmp", os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
}

// opsCommit fsyncs and closes f (path.tmp), renames it to path and fsyncs
// the directory, so that path is either the old file or the whole new one.
func opsCommit(f *os.File, path string) error {
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(f.Name(), path); err != nil {
		return err
	}
	if d, err := os.Open(filepath.Dir(path)); err == nil {
		_ = d.Sync() // not every filesystem can sync a directory
		d.Close()
	}
	return nil
}

// exportCmd is `qxtd export dlr`.
func exportCmd(args []string, stdout, stderr io.Writer) int {
	c := newOpsCLI("export", stdout, stderr)
	return c.exit(c.export(args))
}

func (c *opsCLI) export(args []string) error {
	fs := c.flagSet()
	from := fs.String("from", "", "start of the window (YYYY-MM-DD or RFC 3339), inclusive")
	to := fs.String("to", "", "end of the window, exclusive")
	ent := fs.String("enterprise", "", "only this enterprise's messages")
	format := fs.String("format", "csv", "csv or jsonl")
	out := fs.String("out", "", "output file (default: standard output)")
	pos, err := c.parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 || pos[0] != "dlr" {
		return opsUsageError("want: qxtd export dlr --from DATE --to DATE [flags]")
	}
	if *format != "csv" && *format != "jsonl" {
		return opsUsageError(fmt.Sprintf("--format %q: want csv or jsonl", *format))
	}
	q := url.Values{"format": {*format}}
	for _, b := range []struct{ name, v string }{{"from", *from}, {"to", *to}} {
		if b.v == "" {
			return opsUsageError("--" + b.name + " is required")
		}
		t, err := api.ParseWindowTime(b.v)
		if err != nil {
			return opsUsageError("--" + b.name + ": " + err.Error())
		}
		q.Set(b.name, t.Format(time.RFC3339Nano))
	}
	if *ent != "" {
		q.Set("enterprise", *ent)
	}
	ctx, cancel := opsContext()
	defer cancel()
	resp, err := c.get(ctx, "/admin/v1/export/dlr", q)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	w := c.stdout
	var f *os.File
	if *out != "" {
		if f, err = opsCreateTemp(*out); err != nil {
			return err
		}
		defer func() {
			if f != nil {
				f.Close()
				os.Remove(f.Name())
			}
		}()
		w = f
	}
	n, err := io.Copy(w, resp.Body)
	if err != nil {
		return fmt.Errorf("export cut short after %d bytes: %w", n, err)
	}
	rows := resp.Trailer.Get(api.RowsTrailer)
	if rows == "" {
		return fmt.Errorf("export incomplete: the daemon did not confirm the end (%d bytes received)", n)
	}
	if f != nil {
		if err := opsCommit(f, *out); err != nil {
			return err
		}
		f = nil
		fmt.Fprintf(c.stderr, "exported %s rows (%d bytes) to %s\n", rows, n, *out)
	}
	return nil
}

// billCmd is `qxtd bill`.
func billCmd(args []string, stdout, stderr io.Writer) int {
	c := newOpsCLI("bill", stdout, stderr)
	return c.exit(c.bill(args))
}

func (c *opsCLI) bill(args []string) error {
	fs := c.flagSet()
	month := fs.String("month", "", "billing month, YYYY-MM (Asia/Shanghai)")
	ent := fs.String("enterprise", "", "only this enterprise")
	asJSON := fs.Bool("json", false, "print the API's JSON (money in fen)")
	pos, err := c.parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) == 1 && *month == "" { // `qxtd bill 2026-11` reads naturally too
		*month, pos = pos[0], nil
	}
	if len(pos) != 0 {
		return opsUsageError("unexpected arguments: " + strings.Join(pos, " "))
	}
	if *month == "" {
		return opsUsageError("--month is required")
	}
	if _, err := api.ParseMonth(*month); err != nil {
		return opsUsageError("--month: " + err.Error())
	}
	q := url.Values{"month": {*month}}
	if *ent != "" {
		q.Set("enterprise", *ent)
	}
	ctx, cancel := opsContext()
	defer cancel()
	resp, err := c.get(ctx, "/admin/v1/bill", q)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	var bills []api.BillLine
	if err := json.NewDecoder(resp.Body).Decode(&bills); err != nil {
		return fmt.Errorf("bill: bad answer: %w", err)
	}
	if *asJSON {
		enc := json.NewEncoder(c.stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(bills)
	}
	printBills(c.stdout, *month, bills)
	return nil
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

// backupCmd is `qxtd backup FILE`.
func backupCmd(args []string, stdout, stderr io.Writer) int {
	c := newOpsCLI("backup", stdout, stderr)
	return c.exit(c.backup(args))
}

func (c *opsCLI) backup(args []string) error {
	fs := c.flagSet()
	pos, err := c.parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return opsUsageError("want: qxtd backup FILE")
	}
	path := pos[0]
	ctx, cancel := opsContext()
	defer cancel()
	start := time.Now()
	resp, err := c.get(ctx, "/admin/v1/backup", nil)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	f, err := opsCreateTemp(path)
	if err != nil {
		return err
	}
	defer func() {
		if f != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	n, err := io.Copy(f, resp.Body)
	if err != nil {
		return fmt.Errorf("backup cut short after %d bytes: %w", n, err)
	}
	if resp.ContentLength >= 0 && n != resp.ContentLength {
		return fmt.Errorf("backup cut short: %d of %d bytes", n, resp.ContentLength)
	}
	if err := f.Sync(); err != nil {
		return err
	}
	if err := opsVerifyBackup(f.Name()); err != nil {
		return fmt.Errorf("backup received but unusable: %w", err)
	}
	if err := opsCommit(f, path); err != nil {
		return err
	}
	f = nil
	fmt.Fprintf(c.stdout, "backup: %d bytes written to %s in %v (verified)\n", n, path, time.Since(start).Round(time.Millisecond))
	return nil
}

// opsVerifyBackup opens a received backup read-only and runs bbolt's
// consistency check over every page; it must hold the store's buckets.
func opsVerifyBackup(path string) error {
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, Timeout: time.Second})
	if err != nil {
		return err
	}
	defer db.Close()
	return db.View(func(tx *bolt.Tx) error {
		var errs []error
		for err := range tx.Check() {
			if len(errs) < 10 {
				errs = append(errs, err)
			}
		}
		if len(errs) > 0 {
			return errors.Join(errs...)
		}
		if tx.Bucket([]byte("msg")) == nil {
			return errors.New("not a qxtd store (no msg bucket)")
		}
		return nil
	})
}
