package main

import (
	"fmt"
	"net"
)

// sdNotify sends state (such as "READY=1") to the service manager over
// the datagram socket named by $NOTIFY_SOCKET, systemd's sd_notify
// protocol: the unit's Type=notify makes `systemctl start` return once
// the listeners are up rather than when the process has merely started.
// An empty socket (not run by systemd, or a unit without Type=notify)
// sends nothing. A name starting with @ is an abstract socket; Go's
// net package maps it.
func sdNotify(socket, state string) error {
	if socket == "" {
		return nil
	}
	conn, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: socket, Net: "unixgram"})
	if err != nil {
		return fmt.Errorf("sd_notify %s: %w", socket, err)
	}
	defer conn.Close()
	if _, err := conn.Write([]byte(state)); err != nil {
		return fmt.Errorf("sd_notify %s: %w", socket, err)
	}
	return nil
}
