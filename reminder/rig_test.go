package reminder

import (
	"context"
	"errors"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	bolt "go.etcd.io/bbolt"

	"github.com/qxtd/qxtd/gateway"
	"github.com/qxtd/qxtd/policy"
	"github.com/qxtd/qxtd/queue"
	"github.com/qxtd/qxtd/segment"
	"github.com/qxtd/qxtd/smpp"
)

// rig is the daemon's parts in-process over one state file: the SMSC
// simulator on loopback, the store, the policy, the gateway with its bind,
// and the reminders' Service (its clock shifted by skew). close stops them
// in the daemon's order; a new rig on the same file is a restart.
type rig struct {
	t     *testing.T
	db    *bolt.DB
	store *queue.Store
	pol   *policy.Policy
	gw    *gateway.Gateway
	svc   *Service
	stop  func()
	// failing makes the store's syncs fail (queue.Options.SyncFault,
	// with errEIO) after bbolt wrote each commit.
	failing atomic.Bool
}

var errEIO = errors.New("fdatasync: input/output error")

const (
	numAlice = "13712345678" // alice's registered mobile, whitelisted
	numOther = "13923412345" // whitelisted for A
)

// openRig opens path (seeding it the first time) with sim as the SMSC.
func openRig(t *testing.T, path string, sim net.Addr, skew time.Duration, cfg Config) *rig {
	t.Helper()
	r := &rig{t: t}
	var err error
	if r.db, err = queue.OpenDB(path, queue.Options{}); err != nil {
		t.Fatal(err)
	}
	var gwMu sync.Mutex
	var gw *gateway.Gateway
	r.store, err = queue.New(r.db, queue.Options{OnDLRReady: func(a string, ready []*queue.Message, at queue.Snapshot) {
		gwMu.Lock()
		g := gw
		gwMu.Unlock()
		if g != nil {
			g.OnDLRReady(a, ready, at)
		}
	}, SyncFault: func() error {
		if r.failing.Load() {
			return errEIO
		}
		return nil
	}})
	if err != nil {
		t.Fatal(err)
	}
	// The daemon's writers of the state file go through the store.
	r.pol, err = policy.New(r.db, policy.Config{BcryptCost: 4, DefaultTPS: 1000, Write: r.store.Update})
	if err != nil {
		t.Fatal(err)
	}
	_, err = r.pol.Seed(context.Background(), policy.SeedData{Enterprises: []policy.SeedEnterprise{
		{
			Enterprise: policy.Enterprise{Code: "A", Name: "甲公司", Signature: "【甲公司】", Package: 1},
			Users: []policy.NewUser{
				{Name: "甲", SystemID: "alice", Password: "secret1", Mobile: numAlice},
				{Name: "甲管", SystemID: "amy", Password: "secret1", Role: policy.RoleAdmin},
			},
			Whitelist: []string{numAlice, numOther},
		},
		{
			Enterprise: policy.Enterprise{Code: "B", Name: "乙公司", Signature: "【乙公司】", Package: 1},
			Users:      []policy.NewUser{{Name: "乙", SystemID: "bob", Password: "secret2", Mobile: numAlice}},
			Whitelist:  []string{numAlice},
		},
	}})
	if err != nil {
		t.Fatal(err)
	}
	g, err := gateway.New(gateway.Config{
		Upstreams: []gateway.UpstreamConfig{{
			Name: "sim", Addr: sim.String(), SystemID: "up", Password: "uppw",
			Binds: 1, Window: 10, RespTimeout: 2 * time.Second,
			Segment: segment.Options{Concat: segment.ConcatUDH8},
		}},
		RetryMin: 50 * time.Millisecond, RetryMax: 200 * time.Millisecond,
	}, r.store, gateway.Rules{P: r.pol}, prometheus.NewRegistry(), nil)
	if err != nil {
		t.Fatal(err)
	}
	gwMu.Lock()
	gw = g
	gwMu.Unlock()
	r.gw = g
	g.Start()
	cfg.DB, cfg.Gateway, cfg.Policy = r.db, g, r.pol
	if cfg.Write == nil && cfg.Shared == nil {
		cfg.Write = r.store.Update
	}
	if skew != 0 {
		cfg.Now = func() time.Time { return time.Now().Add(skew) }
	}
	if r.svc, err = New(cfg); err != nil {
		t.Fatal(err)
	}
	closed := false
	r.stop = func() {
		if closed {
			return
		}
		closed = true
		g.Stop()
		if err := r.store.Check(); err != nil {
			t.Errorf("store consistency: %v", err)
		}
		_ = r.store.Close()
		_ = r.db.Close()
	}
	t.Cleanup(r.stop)
	return r
}

// run starts the scheduler as the daemon does; stop cancels it and waits.
func (r *rig) run() (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); r.svc.Run(ctx) }()
	return func() { cancel(); <-done }
}

func (r *rig) user(sid string) *policy.User {
	r.t.Helper()
	u, err := r.pol.User(policy.OperatorActor("test"), sid)
	if err != nil {
		r.t.Fatal(err)
	}
	return u
}

// newSim starts the SMSC simulator (recording) on loopback.
func newSim(t *testing.T) (*smpp.Simulator, net.Addr) {
	t.Helper()
	sim := smpp.NewSimulator(smpp.SimOptions{SystemID: "up", Password: "uppw", Record: true, DLRDelay: 10 * time.Millisecond})
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = sim.Serve(l) }()
	t.Cleanup(func() { _ = sim.Close() })
	return sim, l.Addr()
}

// waitReceived waits until the simulator has accepted n messages whose
// text contains want, or fails the test at the deadline.
func waitReceived(t *testing.T, sim *smpp.Simulator, want string, n int, d time.Duration) []smpp.SimMessage {
	t.Helper()
	deadline := time.NewTimer(d)
	defer deadline.Stop()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		var got []smpp.SimMessage
		for _, m := range sim.Received() {
			if strings.Contains(decodeUCS2(m.ShortMessage), want) {
				got = append(got, m)
			}
		}
		if len(got) >= n {
			return got
		}
		select {
		case <-deadline.C:
			t.Fatalf("after %v the SMSC has %d messages with %q, want %d", d, len(got), want, n)
		case <-tick.C:
		}
	}
}

func decodeUCS2(b []byte) string {
	var rs []rune
	for i := 0; i+1 < len(b); i += 2 {
		rs = append(rs, rune(b[i])<<8|rune(b[i+1]))
	}
	return string(rs)
}

func tempPath(t *testing.T) string { return filepath.Join(t.TempDir(), "qxtd.db") }
