// Command qxtd is the SMPP 3.4 gateway daemon. See the README for use.
package main

import "os"

func main() { os.Exit(run(os.Args[1:], os.Stdout, os.Stderr)) }
