package main

import (
	"errors"
	"fmt"
	"net"
	"strings"
)

// placeholderUpstreams names the upstreams whose host is under .invalid
// (RFC 6761: a name that never resolves). The Debian package's
// /etc/qxtd/qxtd.yaml ships one such upstream because a configuration
// needs at least one and the package cannot know the operator's SMSC: the
// file passes `serve --check` (with a warning from this), and `serve`
// refuses to start with this error, naming the file and what to set,
// instead of running with binds that can never come up.
func placeholderUpstreams(cfg *Config, path string) error {
	var errs []error
	for i, u := range cfg.Upstreams {
		host, _, err := net.SplitHostPort(u.Addr)
		if err != nil {
			continue // Validate reports it
		}
		h := strings.ToLower(strings.TrimSuffix(host, "."))
		if h == "invalid" || strings.HasSuffix(h, ".invalid") {
			errs = append(errs, fmt.Errorf("upstreams[%d].addr: %s is a placeholder (.invalid never resolves): "+
				"edit %s and set upstreams[%d] addr, system_id and password to your SMSC's, then start qxtd again",
				i, u.Addr, path, i))
		}
	}
	return errors.Join(errs...)
}
