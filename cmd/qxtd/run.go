package main

import (
	"flag"
	"fmt"
	"io"
)

const usage = `usage: qxtd <command> [flags]

commands:
  serve   --config FILE [--check]   run the daemon (--check: validate the config and exit)
  send    --to N --text T [flags]   submit one message over SMPP and print its receipt
  admin   <command> [flags]         enterprises, users, whitelists, scope, packages (qxtd admin help)
  export  dlr --from D --to D       DLR export, CSV or JSON Lines (qxtd export --help)
  bill    --month YYYY-MM           the monthly bill per enterprise, in yuan
  backup  FILE                      a consistent copy of the running daemon's store
  version                           print the version
`

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	switch args[0] {
	case "serve":
		fs := flag.NewFlagSet("serve", flag.ContinueOnError)
		fs.SetOutput(stderr)
		path := fs.String("config", "configs/qxtd.yaml", "configuration file")
		check := fs.Bool("check", false, "validate the configuration and exit")
		if err := fs.Parse(args[1:]); err != nil {
			return 2
		}
		cfg, err := LoadConfig(*path)
		if err != nil {
			fmt.Fprintln(stderr, "qxtd:", err)
			return 1
		}
		if *check {
			fmt.Fprintln(stdout, "configuration ok:", *path)
			return 0
		}
		if err := serve(cfg, stderr); err != nil {
			fmt.Fprintln(stderr, "qxtd:", err)
			return 1
		}
		return 0
	case "send":
		return sendCmd(args[1:], stdout, stderr)
	case "admin":
		return adminCmd(args[1:], stdout, stderr)
	case "export":
		return exportCmd(args[1:], stdout, stderr)
	case "bill":
		return billCmd(args[1:], stdout, stderr)
	case "backup":
		return backupCmd(args[1:], stdout, stderr)
	case "version":
		fmt.Fprintln(stdout, "qxtd", version)
		return 0
	case "-h", "--help", "help":
		fmt.Fprint(stdout, usage)
		return 0
	}
	fmt.Fprintf(stderr, "qxtd: unknown command %q\n%s", args[0], usage)
	return 2
}
