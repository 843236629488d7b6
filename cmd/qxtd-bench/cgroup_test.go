package main

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// -hog-cgroup writes the weights of its three groups on the parent's
// scale (v2 cpu.weight, v1 cpu.shares), moves the bench into its own
// group, qxtd and the hog into theirs, and the bench back at Close. A
// directory standing in for cgroupfs: the kernel's side (moving the
// process) is the kernel's; what the bench writes where is tested here.
func TestCgroupsWeightsAndPlaces(t *testing.T) {
	self := strconv.Itoa(os.Getpid())
	for _, tc := range []struct {
		marker, file       string
		gateway, hog, peer string
	}{
		{"cgroup.controllers", "cpu.weight", "1000", "100", "1000"},
		{"cpu.shares", "cpu.shares", "10240", "1024", "10240"},
	} {
		t.Run(tc.file, func(t *testing.T) {
			dir := t.TempDir()
			writeFileT(t, filepath.Join(dir, tc.marker), "")
			c, err := openCgroups(dir, 1000)
			if err != nil {
				t.Fatal(err)
			}
			for group, want := range map[string]string{cgGateway: tc.gateway, cgHog: tc.hog, cgPeers: tc.peer} {
				if got := readFileT(t, filepath.Join(dir, group, tc.file)); got != want {
					t.Errorf("%s/%s = %q, want %q", group, tc.file, got, want)
				}
			}
			if got := readFileT(t, filepath.Join(dir, cgPeers, "cgroup.procs")); got != self {
				t.Errorf("the bench was not moved into %s: cgroup.procs %q", cgPeers, got)
			}
			if err := c.placer(cgGateway)(4242); err != nil {
				t.Fatal(err)
			}
			if got := readFileT(t, filepath.Join(dir, cgGateway, "cgroup.procs")); got != "4242" {
				t.Errorf("qxtd was not moved into %s: cgroup.procs %q", cgGateway, got)
			}
			c.Close()
			if got := readFileT(t, filepath.Join(dir, "cgroup.procs")); got != self {
				t.Errorf("Close did not move the bench back: cgroup.procs %q", got)
			}
		})
	}
}

func TestCgroupsRefused(t *testing.T) {
	dir := t.TempDir()
	if _, err := openCgroups(dir, 100); err == nil || !strings.Contains(err.Error(), "neither a cgroup v2") {
		t.Errorf("a directory that is no cgroup: %v", err)
	}
	writeFileT(t, filepath.Join(dir, "cgroup.controllers"), "")
	for _, w := range []int{0, 10001} {
		if _, err := openCgroups(dir, w); err == nil {
			t.Errorf("-gateway-weight %d taken", w)
		}
	}
	// Without -hog-cgroup nothing is placed anywhere.
	var none *cgroups
	if err := none.placer(cgHog)(1); err != nil {
		t.Errorf("nil cgroups: %v", err)
	}
	none.Close()
}

func writeFileT(t *testing.T, path, s string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
}

func readFileT(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
