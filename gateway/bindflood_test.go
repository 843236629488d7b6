package gateway_test

import (
	"bufio"
	"bytes"
	"context"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fiorix/go-smpp/smpp/pdu"
	"github.com/fiorix/go-smpp/smpp/pdu/pdufield"
	"go.etcd.io/bbolt"

	"github.com/qxtd/qxtd/gateway"
	"github.com/qxtd/qxtd/policy"
	"github.com/qxtd/qxtd/smpp"
)

// floodRules is the real policy at bcrypt cost, one bcrypt at a time (2
// cores), fronted by the gateway's AuthCache with one check in flight per
// source address.
func floodRules(cost int) func(t testing.TB, db *bbolt.DB) gateway.Policy {
	return func(t testing.TB, db *bbolt.DB) gateway.Policy { return floodPolicy(t, db, cost) }
}

func floodPolicy(t testing.TB, db *bbolt.DB, cost int) gateway.Policy {
	// The accounts were set up a minute ago: credentials changed in the
	// current second are not remembered.
	pol, err := policy.New(db, policy.Config{BcryptCost: cost, AuthConcurrency: 1,
		Now: func() time.Time { return time.Now().Add(-time.Minute) }})
	if err != nil {
		t.Fatal(err)
	}
	_, err = pol.Seed(context.Background(), policy.SeedData{Enterprises: []policy.SeedEnterprise{{
		Enterprise: policy.Enterprise{Code: "E1", Name: "甲公司", Signature: "【甲公司】", Package: 1},
		Users: []policy.NewUser{
			{Name: "甲", SystemID: "alice", Password: "secret1"},
			{Name: "丙", SystemID: "carol", Password: "secret3"},
		},
	}}})
	if err != nil {
		t.Fatal(err)
	}
	return gateway.Rules{P: pol, Auth: gateway.NewAuthCache(gateway.AuthOptions{Concurrency: 1, PerIP: 1})}
}

// bindFlood keeps one connection from each of srcs binding with a wrong password,
// each sending its next bind as soon as the last was refused, until ctx
// ends. It returns how many answers the flood got and a channel closed
// once every connection has been refused at least once (the flood is then
// established: every flooding address is known to fail).
func bindFlood(ctx context.Context, t *testing.T, addr string, srcs []string, wg *sync.WaitGroup) (*atomic.Int64, <-chan struct{}) {
	var answered atomic.Int64
	running := make(chan struct{})
	var first sync.WaitGroup
	first.Add(len(srcs))
	go func() { first.Wait(); close(running) }()
	for i, src := range srcs {
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
		nc, err := d.DialContext(ctx, "tcp", addr)
		if err != nil {
			t.Fatalf("flood dial from %s: %v", src, err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer nc.Close()
			once := sync.OnceFunc(first.Done)
			defer once() // a connection that ends early does not hold the test up
			stop := context.AfterFunc(ctx, func() { _ = nc.Close() })
			defer stop()
			r := bufio.NewReader(nc)
			for seq := uint32(1); ctx.Err() == nil; seq++ {
				b := pdu.NewBindTransceiver()
				_ = b.Fields().Set(pdufield.SystemID, "alice")
				_ = b.Fields().Set(pdufield.Password, "guess"+string(rune('a'+i%26)))
				_ = b.Fields().Set(pdufield.InterfaceVersion, uint8(0x34))
				b.Header().Seq = seq
				var buf bytes.Buffer
				if err := b.SerializeTo(&buf); err != nil {
					return
				}
				if _, err := nc.Write(buf.Bytes()); err != nil {
					return
				}
				if _, err := smpp.ReadFrame(r); err != nil {
					return
				}
				answered.Add(1)
				once()
			}
		}()
	}
	return &answered, running
}

// timedBind binds systemID from 127.0.0.1 and returns how long it took.
func timedBind(t *testing.T, addr, systemID, password string) time.Duration {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	start := time.Now()
	c, err := smpp.Dial(ctx, smpp.ClientOptions{Addr: addr, SystemID: systemID, Password: password,
		Kind: smpp.BindTransceiver, Conn: smpp.ConnOptions{RespTimeout: 30 * time.Second}})
	took := time.Since(start)
	if err != nil {
		t.Fatalf("bind %s under flood: %v (after %s)", systemID, err, took)
	}
	_ = c.Close()
	return took
}

// TestBindFloodDoesNotLockOutRealUsers floods the bind path with
// wrong-password binds while real users bind from 127.0.0.1. The whole
// 127.0.0.0/8 is loopback on Linux, so the flood comes from other source
// addresses: 48 connections of one address, or one connection from each
// of 48 addresses (127.0.0.2–49; of the 48 connections from one address
// the server's MaxUnboundPerIP of 32 closes 16 at once). A known-good rebind is answered from the
// credential cache; a first bind from an address without failures goes
// ahead of the checks queued for addresses that keep failing. (In the
// first seconds of a flood from fresh addresses, before each has failed
// once, a first bind still waits its turn among them.)
//
// make test runs it at bcrypt cost 7 (an eighth of the production work,
// so that 48 flooding addresses are all refused once within seconds, even
// under -race) and holds a real bind to 8 bcrypt checks, the time of one
// check measured first, nothing else running (at least 1 s: scheduling
// noise on a shared machine). Without the credential cache and the order
// of the queue, a real bind waits behind one check per flooding address:
// 48 checks (5.5 s measured against a bound of 1.6 s). make soak runs it at the production cost with the target of
// the issue, < 1 s (TestSoakBindFlood).
func TestBindFloodDoesNotLockOutRealUsers(t *testing.T) {
	bindFloodCases(t, 7, func(check time.Duration) time.Duration { return max(time.Second, 8*check) })
}

// bindFloodCases floods from one address and from 48, and holds the real
// binds to limit(one check).
func bindFloodCases(t *testing.T, cost int, limit func(check time.Duration) time.Duration) {
	one := make([]string, 48)
	many := make([]string, 48)
	for i := range 48 {
		one[i] = "127.0.0.2"
		many[i] = net.IPv4(127, 0, 0, byte(2+i)).String()
	}
	for _, tc := range []struct {
		name string
		srcs []string
	}{{"one address", one}, {"48 addresses", many}} {
		t.Run(tc.name, func(t *testing.T) {
			// A machine whose cores other work holds (make test's other
			// packages, a shared CI host) can stretch one flood's binds
			// past the bound; a lockout (binds waiting behind a check per
			// flooding address) misses it every time, so a miss is
			// measured again once, on a fresh rig.
			for attempt := 1; ; attempt++ {
				cold, worst, limit := bindUnderFlood(t, tc.name, tc.srcs, cost, limit)
				if worst <= limit && cold <= limit {
					return
				}
				if attempt == 2 {
					t.Errorf("real binds took %s (first bind) and %s (rebind), want < %s (twice)", cold, worst, limit)
					return
				}
				t.Logf("real binds took %s (first bind) and %s (rebind), want < %s: measuring again", cold, worst, limit)
			}
		})
	}
}

// bindUnderFlood starts a rig, floods it from srcs and times a first bind
// and three known-good rebinds; limit is the bound for the one check it
// measures first.
func bindUnderFlood(t *testing.T, name string, srcs []string, cost int, limit func(check time.Duration) time.Duration) (cold, worst, bound time.Duration) {
	r := newRig(t, rigOpts{rules: floodRules(cost)})
	// alice has bound before: her credentials are known. That bind is one
	// bcrypt check with nothing else running: the unit of the bound, so
	// that it holds under -race too (bcrypt is several times slower there).
	check := timedBind(t, r.addr, "alice", "secret1")
	bound = limit(check)

	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	answered, running := bindFlood(ctx, t, r.addr, srcs, &wg)
	defer func() { cancel(); wg.Wait() }()
	// Every flooding address refused once is 48 bcrypt checks one at a
	// time: about 5 s under -race on a quiet machine, and several times
	// that on one whose cores other work holds (the deadline is for a
	// flood that never gets going, not a bound).
	select {
	case <-running:
	case <-time.After(90 * time.Second):
		t.Fatal("the flood's connections were not all refused once within 90 s")
	}
	cold = timedBind(t, r.addr, "carol", "secret3")
	for range 3 {
		worst = max(worst, timedBind(t, r.addr, "alice", "secret1"))
	}
	t.Logf("flood from %s: one check alone %s, first bind %s, known-good rebind worst of 3 %s (flood answered %d)",
		name, check, cold, worst, answered.Load())
	return cold, worst, bound
}

// TestBindFloodFreshAddressesOfOneNetwork: a flood whose every bind comes
// from an address that has not failed yet (one connection and one bind
// an address, 254 of them in 127.0.5.0/24, as an IPv6 /48 offers 65,536
// /64s) is served first like any clean address, so without a bound per
// network a real user's first bind waited behind one check per flooding
// connection (48: 5.1 s at cost 7 against a bound of 1 s). Its network
// has PerNetworkTimes × PerIP checks running or waiting at once (4 here):
// a real user from another network waits behind those only.
func TestBindFloodFreshAddressesOfOneNetwork(t *testing.T) {
	for attempt := 1; ; attempt++ {
		cold, bound := bindUnderFreshFlood(t)
		if cold <= bound {
			return
		}
		if attempt == 2 {
			t.Fatalf("a first bind under the flood took %s, want < %s (twice)", cold, bound)
		}
		t.Logf("a first bind under the flood took %s, want < %s: measuring again", cold, bound)
	}
}

func bindUnderFreshFlood(t *testing.T) (cold, bound time.Duration) {
	rig := newRig(t, rigOpts{rules: floodRules(7)})
	bound = max(time.Second, 8*timedBind(t, rig.addr, "alice", "secret1"))

	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	defer func() { cancel(); wg.Wait() }()
	var next, answered atomic.Int64
	for range 48 {
		wg.Go(func() {
			for ctx.Err() == nil {
				i := next.Add(1)
				if i > 254 {
					return // every address of the network used once
				}
				if freshBind(ctx, rig.addr, net.IPv4(127, 0, 5, byte(i))) {
					answered.Add(1)
				}
			}
		})
	}
	// The flood is going once a few of its binds were answered: every
	// flooding connection then has one waiting.
	waitFor(t, 60*time.Second, "the flood's first answers", func() bool { return answered.Load() >= 4 })
	cold = timedBind(t, rig.addr, "carol", "secret3")
	t.Logf("flood of fresh addresses of 127.0.5.0/24: a first bind from 127.0.0.1 %s (bound %s; flood answered %d)", cold, bound, answered.Load())
	return cold, bound
}

// freshBind binds once from src with a wrong password and reports whether
// it was answered.
func freshBind(ctx context.Context, addr string, src net.IP) bool {
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: src}}
	nc, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return false
	}
	defer nc.Close()
	stop := context.AfterFunc(ctx, func() { _ = nc.Close() })
	defer stop()
	b := pdu.NewBindTransceiver()
	_ = b.Fields().Set(pdufield.SystemID, "alice")
	_ = b.Fields().Set(pdufield.Password, "guess")
	_ = b.Fields().Set(pdufield.InterfaceVersion, uint8(0x34))
	b.Header().Seq = 1
	var buf bytes.Buffer
	if err := b.SerializeTo(&buf); err != nil {
		return false
	}
	if _, err := nc.Write(buf.Bytes()); err != nil {
		return false
	}
	_, err = smpp.ReadFrame(bufio.NewReader(nc))
	return err == nil
}
