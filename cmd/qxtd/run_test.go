package main

import (
	"strings"
	"testing"

	"github.com/spf13/cobra"
)

// TestCommandLine covers the command tree's own behaviour: exit statuses,
// help, version, completion. The commands' work is tested in their files.
func TestCommandLine(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		args        []string
		code        int
		out, errOut []string // substrings
		emptyStderr bool
	}{
		{args: []string{"version"}, out: []string{currentBuild().String() + "\n"}, emptyStderr: true},
		{args: []string{"--version"}, out: []string{currentBuild().String() + "\n"}, emptyStderr: true},
		{args: []string{"--help"}, out: []string{"Exit status: 0 done, 1 failed", "admin", "backup", "bill", "export", "send", "serve", "version", "completion"}},
		{args: []string{"help", "export", "dlr"}, out: []string{"qxtd export dlr (--from DATE --to DATE | --after CURSOR | --save-cursor FILE)", "--token string"}},
		{args: []string{"completion", "bash"}, out: []string{"bash completion V2 for qxtd"}, emptyStderr: true},
		{args: []string{}, code: 2, errOut: []string{"qxtd: want a command: one of admin, backup, bill, disk-check, export, send, serve, version", "Run 'qxtd --help' for usage."}},
		{args: []string{"frobnicate"}, code: 2, errOut: []string{`qxtd: unknown command "frobnicate"`}},
		{args: []string{"servr"}, code: 2, errOut: []string{"did you mean serve?"}},
		{args: []string{"version", "extra"}, code: 2, errOut: []string{"qxtd version: version: wrong number of arguments"}},
		{args: []string{"serve", "--config", "../../configs/qxtd.yaml", "--check"}, out: []string{"configuration ok: ../../configs/qxtd.yaml"}, emptyStderr: true},
		{args: []string{"serve", "--config", "../../testdata/config/invalid-unknown-key.yaml", "--check"}, code: 1, errOut: []string{"qxtd serve: config ", "smpp.listn"}},
		{args: []string{"serve", "--bogus"}, code: 2, errOut: []string{"qxtd serve: unknown flag: --bogus", "Run 'qxtd serve --help' for usage."}},
		{args: []string{"send", "--to", "13800138000"}, code: 2, errOut: []string{"qxtd send: --to and --text are required"}},
		{args: []string{"send", "--smpp", "127.0.0.1:1", "--to", "13800138000", "--text", "hi", "--wait", "0"}, code: 1, errOut: []string{"qxtd send: "}},
		{args: []string{"bill", "-month", "2026-11"}, code: 2, errOut: []string{"unknown shorthand flag"}},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			code, out, errs := runOps(tc.args...)
			if code != tc.code {
				t.Fatalf("exit %d, want %d\nstdout:\n%s\nstderr:\n%s", code, tc.code, out, errs)
			}
			for _, w := range tc.out {
				if !strings.Contains(out, w) {
					t.Errorf("stdout lacks %q:\n%s", w, out)
				}
			}
			for _, w := range tc.errOut {
				if !strings.Contains(errs, w) {
					t.Errorf("stderr lacks %q:\n%s", w, errs)
				}
			}
			if tc.emptyStderr && errs != "" {
				t.Errorf("stderr:\n%s", errs)
			}
		})
	}
}

// TestCommandTreeHelp: every command says what it does, and every command
// that takes arguments names them in its synopsis.
func TestCommandTreeHelp(t *testing.T) {
	t.Parallel()
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		if c.Short == "" {
			t.Errorf("%s: no Short description", c.CommandPath())
		}
		if c.Runnable() && c.Args == nil {
			t.Errorf("%s: positional arguments not checked", c.CommandPath())
		}
		for _, s := range c.Commands() {
			walk(s)
		}
	}
	walk(newRootCmd())
}
