package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/qxtd/qxtd/api"
)

// run is the whole command line without the process: it runs args and
// returns the exit status. Tests call it.
func run(args []string, stdout, stderr io.Writer) int {
	return runIO(os.Stdin, args, stdout, stderr)
}

// runIO is run reading standard input (passwords) from stdin.
func runIO(stdin io.Reader, args []string, stdout, stderr io.Writer) int {
	root := newRootCmd()
	root.SetIn(stdin)
	root.SetOut(stdout)
	root.SetErr(stderr)
	if args == nil {
		args = []string{} // nil would make cobra read os.Args
	}
	root.SetArgs(args)
	cmd, err := root.ExecuteC()
	return exitStatus(cmd, err, stderr)
}

// Exit statuses, as the README and `qxtd --help` give them.
const (
	exitOK      = 0
	exitFailure = 1 // refused by the API, unreachable, incomplete, the daemon failed
	exitUsage   = 2 // a command-line mistake
)

const rootLong = `qxtd is an SMPP 3.4 gateway for enterprise SMS: ` + "`qxtd serve`" + ` runs the
daemon; the other commands talk to a running daemon (SMPP for send, the admin
API for admin, export, bill and backup).

Exit status: 0 done, 1 failed (refused by the API with its reason and message
on stderr, unreachable, incomplete), 2 bad usage.`

// newRootCmd builds the whole command tree. Every flag is bound to a
// variable of the command that owns it: nothing is shared between two
// runs.
func newRootCmd() *cobra.Command {
	build := currentBuild()
	root := &cobra.Command{
		Use:           "qxtd",
		Short:         "SMPP 3.4 gateway for enterprise SMS",
		Long:          rootLong,
		Version:       build.Version + " " + build.details(),
		SilenceErrors: true, // exitStatus reports errors
		SilenceUsage:  true,
	}
	root.SetVersionTemplate("qxtd {{.Version}}\n") // --version prints the line version prints
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err.Error()} })
	group(root,
		serveCmd(),
		sendCmd(),
		adminCmd(),
		exportCmd(),
		billCmd(),
		backupCmd(),
		diskCheckCmd(),
		&cobra.Command{
			Use:   "version",
			Short: "Print the version, commit, build date and Go version",
			Args:  nargs(0, 0),
			Run:   func(c *cobra.Command, _ []string) { fmt.Fprintln(c.OutOrStdout(), build.String()) },
		},
	)
	return root
}

// exitStatus reports err on stderr and returns the exit status. Messages
// start with the top-level command ("qxtd admin: …").
func exitStatus(cmd *cobra.Command, err error, stderr io.Writer) int {
	if err == nil {
		return exitOK
	}
	prefix := "qxtd"
	if cmd != nil {
		prefix = topCommand(cmd)
	}
	var ue usageError
	var ae *api.APIError
	switch {
	case errors.As(err, &ue):
		fmt.Fprintf(stderr, "%s: %s\n", prefix, ue.msg)
		if cmd != nil {
			fmt.Fprintf(stderr, "Run '%s --help' for usage.\n", cmd.CommandPath())
		}
		return exitUsage
	case errors.As(err, &ae):
		fmt.Fprintf(stderr, "%s: %s: %s\n", prefix, ae.Reason, ae.Message)
		return exitFailure
	}
	fmt.Fprintf(stderr, "%s: %v\n", prefix, err)
	return exitFailure
}

// topCommand is "qxtd" and the first command under it: "qxtd admin".
func topCommand(c *cobra.Command) string {
	for c.HasParent() && c.Parent().HasParent() {
		c = c.Parent()
	}
	return c.CommandPath()
}

// usageError is a command-line mistake (exit status 2).
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error { return usageError{fmt.Sprintf(format, args...)} }

// group makes c a command that holds others: without one it is a usage
// error naming them, and "c help" prints c's help.
func group(c *cobra.Command, subs ...*cobra.Command) *cobra.Command {
	c.AddCommand(subs...)
	c.SuggestionsMinimumDistance = 2
	c.Args = cobra.ArbitraryArgs // checked below, as a usage error
	c.RunE = func(c *cobra.Command, args []string) error {
		if len(args) == 0 {
			return usagef("want a command: one of %s", strings.Join(subcommandNames(c), ", "))
		}
		if args[0] == "help" {
			return c.Help()
		}
		msg := fmt.Sprintf("unknown command %q for %q; want one of %s", args[0], c.CommandPath(), strings.Join(subcommandNames(c), ", "))
		if s := c.SuggestionsFor(args[0]); len(s) > 0 {
			msg += "; did you mean " + strings.Join(s, " or ") + "?"
		}
		return usageError{msg}
	}
	return c
}

func subcommandNames(c *cobra.Command) []string {
	var names []string
	for _, s := range c.Commands() {
		if s.IsAvailableCommand() && s.Name() != "help" && s.Name() != "completion" {
			names = append(names, s.Name())
		}
	}
	return names
}

// nargs checks the number of positional arguments (max -1: any).
func nargs(minPos, maxPos int) cobra.PositionalArgs {
	return func(c *cobra.Command, args []string) error {
		if len(args) < minPos || maxPos >= 0 && len(args) > maxPos {
			return usagef("%s: wrong number of arguments (%d): want %s", c.Name(), len(args), c.Use)
		}
		return nil
	}
}
