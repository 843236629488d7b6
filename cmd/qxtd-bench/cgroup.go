package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
)

// Under systemd the hog of a +hog scenario would not share qxtd's process
// group: qxtd.service and a batch job in another unit are cgroups of their
// own, each with a CPU weight, and a nice value counts only inside its
// cgroup. -hog-cgroup DIR reproduces that (RESULTS.md, "Beside a CPU hog,
// again, and in a unit of its own"): under DIR, a cgroup the bench may
// make children in (cgroup v2 with the cpu controller given to its
// children, or cgroup v1's cpu hierarchy), it puts
//
//	qxtd-bench-gateway  qxtd (every start), at -gateway-weight
//	qxtd-bench-hog      the hog, at systemd's default weight (100)
//	qxtd-bench-peers    the bench itself (load client and SMSC peer), at 10×
//	                    the default, standing in for machines of their own
//
// so that the hog competes with qxtd as another unit would.

// Cgroup names under -hog-cgroup.
const (
	cgGateway = "qxtd-bench-gateway"
	cgHog     = "qxtd-bench-hog"
	cgPeers   = "qxtd-bench-peers"
)

// cgroups is the bench's groups under one parent. The zero value places
// nothing, so callers need not ask whether -hog-cgroup was given.
type cgroups struct {
	parent string
	v2     bool // cpu.weight (1–10000); else v1 cpu.shares (1024 = weight 100)
}

// openCgroups makes the three groups under parent with their weights
// (systemd's CPUWeight scale: 100 is the default) and moves the bench
// into its own. Close moves it back and removes them.
func openCgroups(parent string, gatewayWeight int) (*cgroups, error) {
	if gatewayWeight < 1 || gatewayWeight > 10000 {
		return nil, fmt.Errorf("-gateway-weight %d: want 1 to 10000", gatewayWeight)
	}
	c := &cgroups{parent: parent}
	switch {
	case exists(filepath.Join(parent, "cgroup.controllers")):
		c.v2 = true
	case exists(filepath.Join(parent, "cpu.shares")):
	default:
		return nil, fmt.Errorf("-hog-cgroup %s: neither a cgroup v2 directory (cgroup.controllers) nor one of v1's cpu hierarchy (cpu.shares)", parent)
	}
	for _, g := range []struct {
		name   string
		weight int
	}{{cgGateway, gatewayWeight}, {cgHog, 100}, {cgPeers, 1000}} {
		dir := filepath.Join(parent, g.name)
		if err := os.Mkdir(dir, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
			return nil, fmt.Errorf("-hog-cgroup: %w", err)
		}
		file, value := "cpu.weight", g.weight
		if !c.v2 {
			file, value = "cpu.shares", g.weight*1024/100
		}
		if err := writeCgroupFile(filepath.Join(dir, file), value); err != nil {
			c.Close()
			return nil, err
		}
	}
	if err := c.place(cgPeers, os.Getpid()); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// place moves process pid (all its threads) into group.
func (c *cgroups) place(group string, pid int) error {
	if c == nil || c.parent == "" {
		return nil
	}
	return writeCgroupFile(filepath.Join(c.parent, group, "cgroup.procs"), pid)
}

// placer is place for one group, as startDaemon and startHog take it.
func (c *cgroups) placer(group string) func(pid int) error {
	return func(pid int) error { return c.place(group, pid) }
}

// Close moves the bench back to the parent and removes the groups (a
// group whose processes have not all exited yet stays: rmdir refuses it).
func (c *cgroups) Close() {
	if c == nil || c.parent == "" {
		return
	}
	_ = writeCgroupFile(filepath.Join(c.parent, "cgroup.procs"), os.Getpid())
	for _, g := range []string{cgGateway, cgHog, cgPeers} {
		_ = os.Remove(filepath.Join(c.parent, g))
	}
}

func writeCgroupFile(path string, v int) error {
	if err := os.WriteFile(path, []byte(strconv.Itoa(v)), 0o644); err != nil {
		return fmt.Errorf("-hog-cgroup: %w", err)
	}
	return nil
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}
