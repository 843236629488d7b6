package main

import (
	"runtime/debug"
	"testing"
)

// Without GOGC in the environment the daemon collects at gcPercent; with
// it, the environment's value stands.
func TestTuneGC(t *testing.T) {
	orig := debug.SetGCPercent(100)
	defer debug.SetGCPercent(orig)
	origLimit := debug.SetMemoryLimit(-1)
	defer debug.SetMemoryLimit(origLimit)
	t.Setenv("GOGC", "")
	t.Setenv("GOMEMLIMIT", "")
	tuneGC()
	if got := debug.SetGCPercent(100); got != gcPercent {
		t.Errorf("GC percent without GOGC = %d, want %d", got, gcPercent)
	}
	if got := debug.SetMemoryLimit(-1); got != memLimit {
		t.Errorf("memory limit without GOMEMLIMIT = %d, want %d", got, memLimit)
	}
	t.Setenv("GOGC", "150")
	debug.SetGCPercent(150) // what the runtime read from GOGC at start
	tuneGC()
	if got := debug.SetGCPercent(100); got != 150 {
		t.Errorf("GC percent with GOGC=150 = %d, want 150 (left alone)", got)
	}
}
