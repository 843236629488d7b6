package main

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestStartDaemonRetriesTakenPort: a qxtd that cannot listen because its
// port was taken meanwhile is started again with new ports, at most
// portAttempts times; any other failure at start is not retried.
func TestStartDaemonRetriesTakenPort(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	real := buildQxtd(t, ctx)
	peer, err := freeAddr()
	if err != nil {
		t.Fatal(err)
	}
	// wrapper is a qxtd whose first fails serves fail with msg, counted
	// in its directory's file "serves"; `serve --check` passes through.
	wrapper := func(fails int, msg string) (bin, counter string) {
		dir := t.TempDir()
		counter = filepath.Join(dir, "serves")
		script := `#!/bin/sh
if [ "$1" = serve ] && [ "$2" != --check ]; then
  n=$(cat ` + counter + ` 2>/dev/null || echo 0)
  echo $((n+1)) > ` + counter + `
  if [ "$n" -lt ` + strconv.Itoa(fails) + ` ]; then echo "` + msg + `" >&2; exit 1; fi
fi
exec ` + real + ` "$@"
`
		bin = filepath.Join(dir, "qxtd")
		if err := os.WriteFile(bin, []byte(script), 0o755); err != nil {
			t.Fatal(err)
		}
		return bin, counter
	}
	serves := func(counter string) int {
		b, _ := os.ReadFile(counter)
		n, _ := strconv.Atoi(strings.TrimSpace(string(b)))
		return n
	}
	opts := func(bin string) daemonOpts {
		return daemonOpts{Bin: bin, BaseConfig: "../../configs/qxtd.yaml", PeerAddr: peer, Binds: 1, Window: 10, Unbound: true}
	}
	const taken = "qxtd serve: http.listen: listen tcp 127.0.0.1:1: bind: address already in use"

	bin, counter := wrapper(portAttempts-1, taken)
	d, err := startDaemon(ctx, opts(bin))
	if err != nil {
		t.Fatalf("taken twice, then free: %v", err)
	}
	d.Stop()
	d.Remove()
	if n := serves(counter); n != portAttempts {
		t.Errorf("%d serves, want %d", n, portAttempts)
	}

	bin, counter = wrapper(portAttempts, taken)
	if _, err := startDaemon(ctx, opts(bin)); !errors.Is(err, errPortTaken) {
		t.Errorf("taken every time: %v, want errPortTaken", err)
	}
	if n := serves(counter); n != portAttempts {
		t.Errorf("taken every time: %d serves, want %d", n, portAttempts)
	}

	bin, counter = wrapper(1, "qxtd serve: store: open: permission denied")
	if _, err := startDaemon(ctx, opts(bin)); err == nil || errors.Is(err, errPortTaken) {
		t.Errorf("another failure: %v", err)
	}
	if n := serves(counter); n != 1 {
		t.Errorf("another failure was tried %d times, want once", n)
	}
}
