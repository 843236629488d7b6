package main

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// Machine is what the rest of the machine did while a scenario was
// measured. On a shared machine (a virtual one, with neighbours) the CPU
// a message costs and the answers' tail drift by a third from hour to
// hour; these say whether a round ran on a quiet machine or beside a busy
// neighbour, so that two rounds, or two builds, are compared fairly.
type Machine struct {
	// Steal is the per cent of the CPUs' time the hypervisor gave to
	// other guests while this guest had work (/proc/stat steal).
	Steal float64 `json:"steal_pct"`
	// Pressure is the per cent of the interval in which some runnable
	// task waited for a CPU (/proc/pressure/cpu, "some"); -1 where the
	// kernel has no pressure accounting.
	Pressure float64 `json:"cpu_pressure_pct"`
	// Others is the CPU, in cores, that processes other than the gateway
	// and the bench used (a +hog scenario's busy loop among them).
	Others float64 `json:"other_cores"`
}

// machineSnap is the machine's CPU accounting at one moment.
type machineSnap struct {
	at                 time.Time
	busy, steal, total int64         // clock ticks over all CPUs
	pressure           time.Duration // -1: no pressure accounting
}

// userHZ is the clock tick of /proc/stat: 100 a second on Linux.
const userHZ = 100

// readMachine snapshots /proc/stat and /proc/pressure/cpu.
func readMachine() (machineSnap, error) {
	s := machineSnap{at: time.Now(), pressure: -1}
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return s, err
	}
	if s.busy, s.steal, s.total, err = parseStatCPU(string(b)); err != nil {
		return s, err
	}
	if b, err := os.ReadFile("/proc/pressure/cpu"); err == nil {
		if p, err := parsePressureSome(string(b)); err == nil {
			s.pressure = p
		}
	}
	return s, nil
}

// parseStatCPU reads the "cpu" line of /proc/stat (user nice system idle
// iowait irq softirq steal, then guest time, which user already counts):
// busy is the ticks spent running anything, steal the ticks taken by the
// hypervisor, total all of them.
func parseStatCPU(stat string) (busy, steal, total int64, err error) {
	for l := range strings.Lines(stat) {
		f := strings.Fields(l)
		if len(f) == 0 || f[0] != "cpu" {
			continue
		}
		if len(f) < 9 {
			return 0, 0, 0, fmt.Errorf("/proc/stat cpu line has %d fields, want 8 or more", len(f)-1)
		}
		var v [8]int64
		for i := range v {
			// Below 2^56 ticks (22 million years at USER_HZ), so that
			// the sums cannot overflow.
			u, err := strconv.ParseUint(f[i+1], 10, 56)
			if err != nil {
				return 0, 0, 0, fmt.Errorf("/proc/stat cpu line: %w", err)
			}
			v[i] = int64(u)
		}
		user, nice, system, idle, iowait, irq, softirq, st := v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[7]
		busy = user + nice + system + irq + softirq
		return busy, st, busy + idle + iowait + st, nil
	}
	return 0, 0, 0, errors.New("/proc/stat has no cpu line")
}

// parsePressureSome is the "some" total of /proc/pressure/cpu: the time,
// since boot, in which at least one runnable task waited for a CPU.
func parsePressureSome(psi string) (time.Duration, error) {
	for l := range strings.Lines(psi) {
		f := strings.Fields(l)
		if len(f) == 0 || f[0] != "some" {
			continue
		}
		for _, kv := range f[1:] {
			if v, ok := strings.CutPrefix(kv, "total="); ok {
				us, err := strconv.ParseInt(v, 10, 64)
				if err != nil {
					return 0, fmt.Errorf("cpu pressure: %w", err)
				}
				return time.Duration(us) * time.Microsecond, nil
			}
		}
	}
	return 0, errors.New("cpu pressure: no some total")
}

// machineOver is Machine between snapshots a and b, given the CPU the
// gateway and the bench used over the same interval.
func machineOver(a, b machineSnap, ours time.Duration) *Machine {
	wall := b.at.Sub(a.at).Seconds()
	total := b.total - a.total
	if wall <= 0 || total <= 0 {
		return nil
	}
	m := &Machine{
		Steal:    100 * float64(b.steal-a.steal) / float64(total),
		Pressure: -1,
	}
	busy := float64(b.busy-a.busy) / userHZ // CPU seconds
	m.Others = max(0, busy-ours.Seconds()) / wall
	if a.pressure >= 0 && b.pressure >= 0 {
		m.Pressure = 100 * (b.pressure - a.pressure).Seconds() / wall
	}
	return m
}
