package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/qxtd/qxtd/api"
	"github.com/qxtd/qxtd/policy"
)

const adminUsage = `usage: qxtd admin [--api URL] [--token T] [--json] <command> [args] [flags]

Administration through the daemon's admin API (the daemon owns the store).

enterprises
  enterprise add CODE --name N --package P [--signature S] [--national] [--offnet]
                 [--cap YUAN] [--no-overage] [--tps N] [--no-whitelist]
  enterprise list
  enterprise show CODE [--month YYYY-MM]
  enterprise set CODE [--name N] [--signature S] [--package P] [--national=BOOL] [--offnet=BOOL]
                 [--cap YUAN (0: none)] [--no-overage=BOOL] [--tps N] [--disabled=BOOL] [--no-whitelist=BOOL]
  scope grant|revoke CODE national|offnet
  package set CODE N
users
  user add CODE SYSTEM_ID --name N [--mobile M] [--role user|admin] [--show-signature] [--password P]
  user list CODE
  user show SYSTEM_ID
  user set SYSTEM_ID [--name N] [--mobile M] [--role user|admin] [--show-signature=BOOL]
  user passwd SYSTEM_ID [--password P]
  user delete SYSTEM_ID
  user apikey SYSTEM_ID [--revoke]
  (without --password, the password is read from the first line of standard input)
whitelist (numbers the operator adds are approved at once)
  whitelist add CODE NUMBER...
  whitelist import CODE FILE [--format csv|xlsx]       (column A; format from the extension)
  whitelist list CODE [--state pending|approved|rejected] [--after NUMBER] [--limit N] [--all]
  whitelist approve|reject CODE (NUMBER... | --all-pending)
  whitelist remove CODE NUMBER...
number overrides (ported numbers, block corrections)
  override list
  override set PREFIX [--carrier china_mobile|china_unicom|china_telecom|china_broadnet] [--province P]
  override remove PREFIX

flags, anywhere on the line:
  --api URL    the daemon's HTTP address (default http://127.0.0.1:8080)
  --token T    the operator token, http.admin_token (default $QXTD_ADMIN_TOKEN)
  --json       print the API's JSON instead of tables

Exit status: 0 done, 1 refused by the API or unreachable (reason and message on
stderr), 2 bad usage.
`

// adminStdin is where passwords are read from when no --password is given.
var adminStdin io.Reader = os.Stdin

type adminCLI struct {
	api, token     string
	json           bool
	stdout, stderr io.Writer
}

// usageError is a command-line mistake (exit status 2).
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error { return usageError{fmt.Sprintf(format, args...)} }

// adminCmd is `qxtd admin`.
func adminCmd(args []string, stdout, stderr io.Writer) int {
	c := &adminCLI{api: "http://127.0.0.1:8080", token: os.Getenv("QXTD_ADMIN_TOKEN"), stdout: stdout, stderr: stderr}
	fs := c.flagSet("admin")
	if err := fs.Parse(args); err != nil {
		return c.exit(err)
	}
	rest := fs.Args()
	if len(rest) == 0 {
		fmt.Fprint(stderr, adminUsage)
		return 2
	}
	if rest[0] == "help" {
		fmt.Fprint(stdout, adminUsage)
		return 0
	}
	group, ok := adminCommands[rest[0]]
	if !ok {
		return c.exit(usagef("unknown command %q", rest[0]))
	}
	if len(rest) < 2 {
		return c.exit(usagef("%s: want one of %s", rest[0], strings.Join(sortedKeys(group), ", ")))
	}
	cmd, ok := group[rest[1]]
	if !ok {
		return c.exit(usagef("%s: unknown command %q; want one of %s", rest[0], rest[1], strings.Join(sortedKeys(group), ", ")))
	}
	return c.exit(cmd(c, c.flagSet(rest[0]+" "+rest[1]), rest[2:]))
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func (c *adminCLI) exit(err error) int {
	var ue usageError
	var ae *api.APIError
	switch {
	case err == nil:
		return 0
	case errors.Is(err, flag.ErrHelp):
		fmt.Fprint(c.stdout, adminUsage)
		return 0
	case errors.As(err, &ue):
		fmt.Fprintf(c.stderr, "qxtd admin: %s\n(qxtd admin help: usage)\n", ue.msg)
		return 2
	case errors.As(err, &ae):
		fmt.Fprintf(c.stderr, "qxtd admin: %s: %s\n", ae.Reason, ae.Message)
		return 1
	}
	fmt.Fprintln(c.stderr, "qxtd admin:", err)
	return 1
}

// flagSet returns a flag set with the common flags. They are bound to c's
// fields with their current values as defaults, so that a flag given before
// the command is not reset by the command's own flag set.
func (c *adminCLI) flagSet(name string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard) // errors are reported by exit, usage by adminUsage
	fs.StringVar(&c.api, "api", c.api, "admin API base URL")
	fs.StringVar(&c.token, "token", c.token, "operator token")
	fs.BoolVar(&c.json, "json", c.json, "print JSON")
	return fs
}

// parse parses flags and positional arguments in any order and checks the
// number of positional ones (max -1: any).
func (c *adminCLI) parse(fs *flag.FlagSet, args []string, minPos, maxPos int) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, err
			}
			return nil, usagef("%s: %v", fs.Name(), err)
		}
		rest := fs.Args()
		if len(rest) == 0 {
			break
		}
		if n := len(args) - len(rest); n > 0 && args[n-1] == "--" {
			pos = append(pos, rest...)
			break
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
	if len(pos) < minPos || maxPos >= 0 && len(pos) > maxPos {
		return nil, usagef("%s: wrong number of arguments (see qxtd admin help)", fs.Name())
	}
	return pos, nil
}

// begin is how a command that calls the API starts: its flags and
// positional arguments, then the client.
func (c *adminCLI) begin(fs *flag.FlagSet, args []string, minPos, maxPos int) (*api.Client, []string, error) {
	pos, err := c.parse(fs, args, minPos, maxPos)
	if err != nil {
		return nil, nil, err
	}
	cl, err := c.client()
	return cl, pos, err
}

func (c *adminCLI) client() (*api.Client, error) {
	if c.token == "" {
		return nil, usagef("no admin token: give --token or set QXTD_ADMIN_TOKEN")
	}
	return &api.Client{Base: c.api, Token: c.token}, nil
}

// out prints v as JSON (--json) or calls human.
func (c *adminCLI) out(v any, human func(w io.Writer)) error {
	if c.json {
		enc := json.NewEncoder(c.stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(v)
	}
	tw := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
	human(tw)
	return tw.Flush()
}

// done reports a change that has no answer body.
func (c *adminCLI) done(status string) error {
	return c.out(api.Status{Status: status}, func(w io.Writer) { fmt.Fprintln(w, status) })
}

type adminFunc func(c *adminCLI, fs *flag.FlagSet, args []string) error

var adminCommands = map[string]map[string]adminFunc{
	"enterprise": {
		"add":  entAdd,
		"list": entList,
		"show": entShow,
		"set":  entSet,
	},
	"scope": {
		"grant":  scopeCmd(true),
		"revoke": scopeCmd(false),
	},
	"package": {
		"set": packageSet,
	},
	"user": {
		"add":    userAdd,
		"list":   userList,
		"show":   userShow,
		"set":    userSet,
		"passwd": userPasswd,
		"delete": userDelete,
		"apikey": userAPIKey,
	},
	"whitelist": {
		"add":     wlAdd,
		"import":  wlImport,
		"list":    wlList,
		"approve": wlDecide(true),
		"reject":  wlDecide(false),
		"remove":  wlRemove,
	},
	"override": {
		"list":   ovList,
		"set":    ovSet,
		"remove": ovRemove,
	},
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
	fmt.Fprintf(w, "cap\t%s\n", capText(e))
	fmt.Fprintf(w, "no_overage\t%s\n", yesNo(e.NoOverage))
	tps := strconv.Itoa(e.TPS)
	if e.TPS == 0 {
		tps = "default"
	}
	fmt.Fprintf(w, "tps\t%s\n", tps)
	fmt.Fprintf(w, "disabled\t%s\n", yesNo(e.Disabled))
	fmt.Fprintf(w, "no_whitelist\t%s\n", yesNo(e.NoWhitelist))
	fmt.Fprintf(w, "updated\t%s\n", e.UpdatedAt.Local().Format(time.DateTime))
}

// --- enterprises ---

func entAdd(c *adminCLI, fs *flag.FlagSet, args []string) error {
	var in api.NewEnterprise
	fs.StringVar(&in.Name, "name", "", "display name (required)")
	fs.StringVar(&in.Signature, "signature", "", "enterprise signature, 【…】")
	fs.IntVar(&in.Package, "package", 0, "package number (required)")
	fs.BoolVar(&in.National, "national", false, "grant national sending")
	fs.BoolVar(&in.OffNet, "offnet", false, "grant off-net sending")
	fs.StringVar(&in.CapYuan, "cap", "", "monthly spending cap in CNY")
	fs.BoolVar(&in.NoOverage, "no-overage", false, "no usage beyond the package")
	fs.IntVar(&in.TPS, "tps", 0, "submissions per second (0: default)")
	fs.BoolVar(&in.NoWhitelist, "no-whitelist", false, "exempt from the whitelist")
	pos, err := c.parse(fs, args, 1, 1)
	if err != nil {
		return err
	}
	in.Code = pos[0]
	if in.Name == "" || in.Package == 0 {
		return usagef("enterprise add: --name and --package are required")
	}
	cl, err := c.client()
	if err != nil {
		return err
	}
	e, err := cl.CreateEnterprise(in)
	if err != nil {
		return err
	}
	return c.out(e, func(w io.Writer) { printEnterprise(w, e) })
}

func entList(c *adminCLI, fs *flag.FlagSet, args []string) error {
	if _, err := c.parse(fs, args, 0, 0); err != nil {
		return err
	}
	cl, err := c.client()
	if err != nil {
		return err
	}
	list, err := cl.Enterprises()
	if err != nil {
		return err
	}
	return c.out(api.EnterpriseList{Enterprises: list}, func(w io.Writer) {
		fmt.Fprintln(w, "CODE\tNAME\tSIGNATURE\tPACKAGE\tNATIONAL\tOFFNET\tCAP\tNO_OVERAGE\tTPS\tDISABLED")
		for _, e := range list {
			fmt.Fprintf(w, "%s\t%s\t%s\t%d\t%s\t%s\t%s\t%s\t%d\t%s\n", e.Code, e.Name, e.Signature, e.Package,
				yesNo(e.National), yesNo(e.OffNet), capText(&e), yesNo(e.NoOverage), e.TPS, yesNo(e.Disabled))
		}
	})
}

func entShow(c *adminCLI, fs *flag.FlagSet, args []string) error {
	month := fs.String("month", "", "billing month YYYY-MM (default: this month)")
	cl, pos, err := c.begin(fs, args, 1, 1)
	if err != nil {
		return err
	}
	d, err := cl.Enterprise(pos[0], *month)
	if err != nil {
		return err
	}
	return c.out(d, func(w io.Writer) {
		printEnterprise(w, &d.Enterprise)
		if p := d.PackageInfo; p != nil {
			fmt.Fprintf(w, "package terms\t%s CNY/month, %d segments included, %s CNY per extra segment\n",
				policy.FormatFen(p.FeeFen), p.Included, policy.FormatFen(p.OverageFen))
		} else {
			fmt.Fprintf(w, "package terms\tpackage %d is not in the package table: sending refused\n", d.Enterprise.Package)
		}
		fmt.Fprintf(w, "users\t%d\n", d.Users)
		fmt.Fprintf(w, "whitelist\t%d approved, %d pending, %d rejected\n", d.Whitelist.Approved, d.Whitelist.Pending, d.Whitelist.Rejected)
		limit := "no limit"
		if d.Usage.Limit >= 0 {
			limit = fmt.Sprintf("limit %d", d.Usage.Limit)
		}
		fmt.Fprintf(w, "usage %s\t%d charged, %d reserved, %s\n", d.Usage.Month, d.Usage.Charged, d.Usage.Reserved, limit)
	})
}

func entSet(c *adminCLI, fs *flag.FlagSet, args []string) error {
	name := fs.String("name", "", "display name")
	sig := fs.String("signature", "", "enterprise signature, 【…】")
	pkg := fs.Int("package", 0, "package number")
	national := fs.Bool("national", false, "national sending")
	offnet := fs.Bool("offnet", false, "off-net sending")
	capYuan := fs.String("cap", "", "monthly spending cap in CNY, 0 = none")
	noOverage := fs.Bool("no-overage", false, "no usage beyond the package")
	tps := fs.Int("tps", 0, "submissions per second (0: default)")
	disabled := fs.Bool("disabled", false, "disable the enterprise")
	noWL := fs.Bool("no-whitelist", false, "exempt from the whitelist")
	pos, err := c.parse(fs, args, 1, 1)
	if err != nil {
		return err
	}
	var p api.EnterprisePatch
	fs.Visit(func(f *flag.Flag) {
		switch f.Name {
		case "name":
			p.Name = name
		case "signature":
			p.Signature = sig
		case "package":
			p.Package = pkg
		case "national":
			p.National = national
		case "offnet":
			p.OffNet = offnet
		case "cap":
			p.CapYuan = capYuan
		case "no-overage":
			p.NoOverage = noOverage
		case "tps":
			p.TPS = tps
		case "disabled":
			p.Disabled = disabled
		case "no-whitelist":
			p.NoWhitelist = noWL
		}
	})
	if p == (api.EnterprisePatch{}) {
		return usagef("enterprise set: nothing to change")
	}
	return c.patchEnterprise(pos[0], p)
}

func (c *adminCLI) patchEnterprise(code string, p api.EnterprisePatch) error {
	cl, err := c.client()
	if err != nil {
		return err
	}
	e, err := cl.UpdateEnterprise(code, p)
	if err != nil {
		return err
	}
	return c.out(e, func(w io.Writer) { printEnterprise(w, e) })
}

func scopeCmd(grant bool) adminFunc {
	return func(c *adminCLI, fs *flag.FlagSet, args []string) error {
		pos, err := c.parse(fs, args, 2, 2)
		if err != nil {
			return err
		}
		var p api.EnterprisePatch
		switch strings.ToLower(pos[1]) {
		case "national":
			p.National = &grant
		case "offnet", "off-net":
			p.OffNet = &grant
		default:
			return usagef("%s: scope %q: want national or offnet", fs.Name(), pos[1])
		}
		return c.patchEnterprise(pos[0], p)
	}
}

func packageSet(c *adminCLI, fs *flag.FlagSet, args []string) error {
	pos, err := c.parse(fs, args, 2, 2)
	if err != nil {
		return err
	}
	n, err := strconv.Atoi(pos[1])
	if err != nil {
		return usagef("package set: package %q: want a number", pos[1])
	}
	return c.patchEnterprise(pos[0], api.EnterprisePatch{Package: &n})
}

// --- users ---

// password returns the --password value, or the first line of stdin.
func password(flagValue string, given bool) (string, error) {
	if given {
		return flagValue, nil
	}
	line, err := bufio.NewReader(adminStdin).ReadString('\n')
	if err != nil && (err != io.EOF || line == "") {
		return "", usagef("no --password, and none on standard input")
	}
	return strings.TrimRight(line, "\r\n"), nil
}

func isSet(fs *flag.FlagSet, name string) bool {
	set := false
	fs.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}

func printUser(w io.Writer, u *api.User) {
	fmt.Fprintf(w, "system_id\t%s\n", u.SystemID)
	fmt.Fprintf(w, "enterprise\t%s\n", u.Enterprise)
	fmt.Fprintf(w, "name\t%s\n", u.Name)
	fmt.Fprintf(w, "mobile\t%s\n", u.Mobile)
	fmt.Fprintf(w, "role\t%s\n", u.Role)
	fmt.Fprintf(w, "show_signature\t%s\n", yesNo(u.ShowSignature))
	fmt.Fprintf(w, "api_key\t%s\n", yesNo(u.HasAPIKey))
}

func userAdd(c *adminCLI, fs *flag.FlagSet, args []string) error {
	var in api.NewUser
	fs.StringVar(&in.Name, "name", "", "user name, unique in the enterprise (required)")
	fs.StringVar(&in.Mobile, "mobile", "", "registered mobile (password resets)")
	fs.StringVar(&in.Role, "role", "user", "user or admin")
	fs.BoolVar(&in.ShowSignature, "show-signature", false, "append the user's name to its messages")
	pw := fs.String("password", "", "SMPP password, 6–8 characters (default: read from stdin)")
	pos, err := c.parse(fs, args, 2, 2)
	if err != nil {
		return err
	}
	in.SystemID = pos[1]
	if in.Name == "" {
		return usagef("user add: --name is required")
	}
	cl, err := c.client()
	if err != nil {
		return err
	}
	if in.Password, err = password(*pw, isSet(fs, "password")); err != nil {
		return err
	}
	u, err := cl.CreateUser(pos[0], in)
	if err != nil {
		return err
	}
	return c.out(u, func(w io.Writer) { printUser(w, u) })
}

func userList(c *adminCLI, fs *flag.FlagSet, args []string) error {
	cl, pos, err := c.begin(fs, args, 1, 1)
	if err != nil {
		return err
	}
	users, err := cl.Users(pos[0])
	if err != nil {
		return err
	}
	return c.out(api.UserList{Users: users}, func(w io.Writer) {
		fmt.Fprintln(w, "SYSTEM_ID\tNAME\tROLE\tMOBILE\tSHOW_SIGNATURE\tAPI_KEY")
		for _, u := range users {
			fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\n", u.SystemID, u.Name, u.Role, u.Mobile, yesNo(u.ShowSignature), yesNo(u.HasAPIKey))
		}
	})
}

func userShow(c *adminCLI, fs *flag.FlagSet, args []string) error {
	cl, pos, err := c.begin(fs, args, 1, 1)
	if err != nil {
		return err
	}
	u, err := cl.User(pos[0])
	if err != nil {
		return err
	}
	return c.out(u, func(w io.Writer) { printUser(w, u) })
}

func userSet(c *adminCLI, fs *flag.FlagSet, args []string) error {
	name := fs.String("name", "", "user name")
	mobile := fs.String("mobile", "", "registered mobile")
	role := fs.String("role", "", "user or admin")
	show := fs.Bool("show-signature", false, "append the user's name to its messages")
	pos, err := c.parse(fs, args, 1, 1)
	if err != nil {
		return err
	}
	var p api.UserPatch
	fs.Visit(func(f *flag.Flag) {
		switch f.Name {
		case "name":
			p.Name = name
		case "mobile":
			p.Mobile = mobile
		case "role":
			p.Role = role
		case "show-signature":
			p.ShowSignature = show
		}
	})
	if p == (api.UserPatch{}) {
		return usagef("user set: nothing to change")
	}
	cl, err := c.client()
	if err != nil {
		return err
	}
	u, err := cl.UpdateUser(pos[0], p)
	if err != nil {
		return err
	}
	return c.out(u, func(w io.Writer) { printUser(w, u) })
}

func userPasswd(c *adminCLI, fs *flag.FlagSet, args []string) error {
	pw := fs.String("password", "", "the new SMPP password (default: read from stdin)")
	cl, pos, err := c.begin(fs, args, 1, 1)
	if err != nil {
		return err
	}
	p, err := password(*pw, isSet(fs, "password"))
	if err != nil {
		return err
	}
	if err := cl.SetPassword(pos[0], p); err != nil {
		return err
	}
	return c.done("password set for " + pos[0])
}

func userDelete(c *adminCLI, fs *flag.FlagSet, args []string) error {
	cl, pos, err := c.begin(fs, args, 1, 1)
	if err != nil {
		return err
	}
	if err := cl.DeleteUser(pos[0]); err != nil {
		return err
	}
	return c.done("user " + pos[0] + " deleted")
}

func userAPIKey(c *adminCLI, fs *flag.FlagSet, args []string) error {
	revoke := fs.Bool("revoke", false, "remove the user's API key")
	cl, pos, err := c.begin(fs, args, 1, 1)
	if err != nil {
		return err
	}
	if *revoke {
		if err := cl.RevokeAPIKey(pos[0]); err != nil {
			return err
		}
		return c.done("API key of " + pos[0] + " revoked")
	}
	k, err := cl.IssueAPIKey(pos[0])
	if err != nil {
		return err
	}
	return c.out(k, func(w io.Writer) {
		fmt.Fprintf(w, "API key of %s (shown only now; it replaces any previous key):\n%s\n", k.SystemID, k.APIKey)
	})
}

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

func wlAdd(c *adminCLI, fs *flag.FlagSet, args []string) error {
	cl, pos, err := c.begin(fs, args, 2, -1)
	if err != nil {
		return err
	}
	r, err := cl.AddWhitelist(pos[0], pos[1:])
	if err != nil {
		return err
	}
	return c.out(r, func(w io.Writer) { printImport(w, r) })
}

func wlImport(c *adminCLI, fs *flag.FlagSet, args []string) error {
	format := fs.String("format", "", "csv or xlsx (default: from the file name)")
	pos, err := c.parse(fs, args, 2, 2)
	if err != nil {
		return err
	}
	var f policy.ImportFormat
	switch strings.ToLower(*format) {
	case "csv":
		f = policy.FormatCSV
	case "xlsx":
		f = policy.FormatXLSX
	case "":
		var ok bool
		if f, ok = policy.FormatOf(pos[1]); !ok {
			return usagef("whitelist import: %s: unknown file type; give --format csv|xlsx", pos[1])
		}
	default:
		return usagef("whitelist import: --format %q: want csv or xlsx", *format)
	}
	cl, err := c.client()
	if err != nil {
		return err
	}
	file, err := os.Open(pos[1])
	if err != nil {
		return err
	}
	defer file.Close()
	r, err := cl.ImportWhitelist(context.Background(), pos[0], f, file)
	if err != nil {
		return err
	}
	return c.out(r, func(w io.Writer) { printImport(w, r) })
}

func wlList(c *adminCLI, fs *flag.FlagSet, args []string) error {
	state := fs.String("state", "", "pending, approved or rejected (default: all)")
	after := fs.String("after", "", "start after this number (the previous page's next)")
	limit := fs.Int("limit", 0, "entries per page (default 100, at most 1000)")
	all := fs.Bool("all", false, "fetch every page")
	cl, pos, err := c.begin(fs, args, 1, 1)
	if err != nil {
		return err
	}
	page, err := cl.ListWhitelist(pos[0], *state, *after, *limit)
	if err != nil {
		return err
	}
	for *all && page.Next != "" {
		next, err := cl.ListWhitelist(pos[0], *state, page.Next, *limit)
		if err != nil {
			return err
		}
		page.Entries, page.Next = append(page.Entries, next.Entries...), next.Next
	}
	return c.out(page, func(w io.Writer) {
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
}

func wlDecide(approve bool) adminFunc {
	return func(c *adminCLI, fs *flag.FlagSet, args []string) error {
		allPending := fs.Bool("all-pending", false, "decide every pending entry")
		pos, err := c.parse(fs, args, 1, -1)
		if err != nil {
			return err
		}
		numbers := pos[1:]
		if *allPending == (len(numbers) > 0) {
			return usagef("%s: give numbers or --all-pending", fs.Name())
		}
		cl, err := c.client()
		if err != nil {
			return err
		}
		decide, verb := cl.Reject, "rejected"
		if approve {
			decide, verb = cl.Approve, "approved"
		}
		r, err := decide(pos[0], numbers, *allPending)
		if err != nil {
			return err
		}
		return c.out(r, func(w io.Writer) { printBulk(w, verb, r) })
	}
}

func wlRemove(c *adminCLI, fs *flag.FlagSet, args []string) error {
	cl, pos, err := c.begin(fs, args, 2, -1)
	if err != nil {
		return err
	}
	r, err := cl.RemoveWhitelist(pos[0], pos[1:])
	if err != nil {
		return err
	}
	return c.out(r, func(w io.Writer) { printBulk(w, "removed", r) })
}

// --- overrides ---

func ovList(c *adminCLI, fs *flag.FlagSet, args []string) error {
	if _, err := c.parse(fs, args, 0, 0); err != nil {
		return err
	}
	cl, err := c.client()
	if err != nil {
		return err
	}
	ovs, err := cl.Overrides()
	if err != nil {
		return err
	}
	return c.out(api.OverrideList{Overrides: ovs}, func(w io.Writer) {
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
}

func ovSet(c *adminCLI, fs *flag.FlagSet, args []string) error {
	var in api.OverrideSet
	fs.StringVar(&in.Carrier, "carrier", "", "china_mobile, china_unicom, china_telecom or china_broadnet")
	fs.StringVar(&in.Province, "province", "", "province, e.g. 广东省")
	pos, err := c.parse(fs, args, 1, 1)
	if err != nil {
		return err
	}
	if in.Carrier == "" && in.Province == "" {
		return usagef("override set: give --carrier, --province or both")
	}
	cl, err := c.client()
	if err != nil {
		return err
	}
	if err := cl.SetOverride(pos[0], in); err != nil {
		return err
	}
	return c.done("override set for " + pos[0])
}

func ovRemove(c *adminCLI, fs *flag.FlagSet, args []string) error {
	cl, pos, err := c.begin(fs, args, 1, 1)
	if err != nil {
		return err
	}
	if err := cl.RemoveOverride(pos[0]); err != nil {
		return err
	}
	return c.done("override removed for " + pos[0])
}
