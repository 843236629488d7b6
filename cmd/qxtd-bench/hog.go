package main

import (
	"fmt"
	"os/exec"
)

// startHog starts a CPU hog: one busy process at nice 19, as a backup
// job or a neighbour on a shared machine would be. The scheduler should
// give it only what qxtd, the client and the peer leave idle, so a
// scenario's speed with it (name+hog) against without it (same run) tells
// how well qxtd keeps its speed beside background load. place, when not
// nil, is given the hog's pid (-hog-cgroup: a cgroup of its own, where
// its nice value no longer counts against qxtd). stop kills it; pid is
// the process that spins (sh runs the loop itself).
func startHog(place func(pid int) error) (stop func(), pid int, err error) {
	cmd := exec.Command("nice", "-n", "19", "sh", "-c", "while :; do :; done")
	if err := cmd.Start(); err != nil {
		return nil, 0, fmt.Errorf("cpu hog: %w", err)
	}
	stop = func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	}
	if place != nil {
		if err := place(cmd.Process.Pid); err != nil {
			stop()
			return nil, 0, err
		}
	}
	return stop, cmd.Process.Pid, nil
}
