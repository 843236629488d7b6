package main

import (
	"context"
	"os"
	"syscall"
	"testing"
	"time"
)

// TestTenantsThroughQxtd: qxtd with the derived configuration of three
// tenants takes each one's bind (its own account and enterprise) and
// relays and receipts all their messages.
func TestTenantsThroughQxtd(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	bin := buildQxtd(t, ctx)
	peer := startTestPeer(t, ctx, 10*time.Millisecond)
	cfg := benchConfig{N: 300, Warmup: 30, Window: 30, Tenants: 3, Stall: 10 * time.Second}
	o := daemonOpts{Bin: bin, BaseConfig: "../../configs/qxtd.yaml", PeerAddr: peer.Addr(), Binds: 2, Window: 20, Tenants: 3}
	sc := allScenarios[3]
	if sc.Name != "qxtd/receipts" {
		t.Fatalf("scenario 3 is %s", sc.Name)
	}
	res, lines, err := runOne(ctx, cfg, o, sc, peer, nil)
	if err != nil {
		t.Fatalf("%v (gateway log: %q)", err, lines)
	}
	if res.Answered != cfg.N || res.ReceiptsGot != cfg.N || res.GatewayCPU <= 0 {
		t.Errorf("through qxtd: %+v", res)
	}
	// Each message passes the store at least three times (accepted,
	// submitted, its receipt) and allocates on the heap on its way.
	if in := res.Inside; in == nil || in.Allocs < 10 || in.Commits <= 0 || in.Commits*in.OpsCommit < 3 {
		t.Errorf("inside qxtd: %+v", in)
	}
	if res.Machine == nil {
		t.Error("no figures of the rest of the machine")
	}
	// Every message is committed (fsync'd) at least once, and a commit
	// writes whole 4 KiB pages: far more than 1 KiB a message, unless the
	// store is in memory (tmpfs), where nothing reaches a disk.
	if inMemoryFS(t, os.TempDir()) {
		if res.GatewayDisk != 0 {
			t.Errorf("a store on tmpfs: %.1f KiB per message written", res.GatewayDisk)
		}
	} else if res.GatewayDisk < 1 {
		t.Errorf("qxtd wrote %.2f KiB per message to storage: not counted", res.GatewayDisk)
	}
}

// inMemoryFS reports whether dir is on tmpfs.
func inMemoryFS(t *testing.T, dir string) bool {
	t.Helper()
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		t.Fatal(err)
	}
	const tmpfsMagic = 0x01021994
	return st.Type == tmpfsMagic
}

func TestShare(t *testing.T) {
	for _, c := range []struct{ total, n int }{{500, 3}, {100, 100}, {7, 10}, {1, 1}} {
		sum, lo, hi := 0, c.total, 0
		for i := range c.n {
			s := share(c.total, c.n, i)
			sum += s
			lo, hi = min(lo, s), max(hi, s)
		}
		if sum != c.total || hi-lo > 1 {
			t.Errorf("share(%d, %d): sum %d, shares %d..%d", c.total, c.n, sum, lo, hi)
		}
	}
}
