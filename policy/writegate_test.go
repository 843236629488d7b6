package policy

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
)

// TestWriteGateRefusesWrites: with the daemon's write gate closed (the
// queue's last commit written but not synced: queue.Store.WriteGate), a
// policy write is refused before it writes the shared file, and the
// snapshot stays as it was; once the gate opens, the write goes through.
func TestWriteGateRefusesWrites(t *testing.T) {
	var closed atomic.Bool
	eio := errors.New("fdatasync: input/output error")
	f := newFixtureWith(t, func(c *Config) {
		c.WriteGate = func(context.Context) error {
			if closed.Load() {
				return eio
			}
			return nil
		}
	})
	closed.Store(true)
	if _, err := f.p.CreateEnterprise(op, Enterprise{Code: "GD0755003", Name: "丙公司", Signature: "【丙公司】", Package: 1}); !errors.Is(err, eio) {
		t.Fatalf("a write with the gate closed: %v, want the gate's error", err)
	}
	if _, ok := f.p.Lookup("GD0755003"); ok {
		t.Fatal("the refused enterprise is in the snapshot")
	}
	closed.Store(false)
	if _, err := f.p.CreateEnterprise(op, Enterprise{Code: "GD0755003", Name: "丙公司", Signature: "【丙公司】", Package: 1}); err != nil {
		t.Fatalf("the write with the gate open: %v", err)
	}
	if _, ok := f.p.Lookup("GD0755003"); !ok {
		t.Fatal("the enterprise is not in the snapshot")
	}
}
