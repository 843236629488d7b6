//go:build soak

package main

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/qxtd/qxtd/cluster/clustertest"
	"github.com/qxtd/qxtd/smpp"
)

// TestSoakClusterEtcd is TestSoakClusterChaos' other half: what the
// cluster does when etcd goes away, when a node stays down past its lease,
// when every node dies at once, and when the ESMEs move between nodes.
// Three real daemons on one embedded etcd (cluster.lease_ttl 4 s) against
// the simulator, under mixed traffic throughout (transceivers of account
// esme submitting short and long texts with receipts, split submitting on
// transmitters and receiving on a receiver, HTTP sends with and without an
// Idempotency-Key, handsets replying to T4's service number for esme4),
// in a seeded order:
//
//   - two etcd blips (stopped 0.5–1.5 s, then up to a second to start
//     again on the same ports and data): every node keeps running and
//     answers a send while etcd is down; afterwards each lists the three
//     members and every carrier bind is up again;
//   - an etcd outage past lease_ttl (5–8 s): each node exits with status 1
//     logging "membership lost", and the test plays systemd (Restart=
//     on-failure: started again 0.5 s later, back-off doubling to 4 s,
//     until it joins once etcd is back);
//   - one node cut off from etcd alone (its own proxy cut: a partition)
//     for lease_ttl + 1–3 s: it gives its binds up at lease_ttl/2, before
//     the others may take them, exits 1 with "membership lost", and joins
//     again once it reaches etcd;
//   - one node killed -9 and started again 2–3 lease_ttl later: the others
//     take over every carrier bind meanwhile;
//   - the three nodes killed -9 at once and started again.
//
// The nodes reach etcd through proxies of the test's
// (clustertest.StartBehindProxy, NewProxy), so that etcd going away cuts
// their connections at once, as a crash would.
//
// Every ESME bind goes to a node picked at random among those up, again
// at each reconnect, and every 1–3 s one of them unbinds and binds
// elsewhere: receipts and replies follow it (README, *Receipts and
// replies follow the ESME*). The SMSC has no cap of its own on binds here,
// so that its peak says whether the cluster kept upstreams[].binds.
//
// SOAK_ETCD_SEED replays a seed; SOAK_ETCD_LOGS=dir keeps the nodes' last
// logs there.
func TestSoakClusterEtcd(t *testing.T) {
	seed := soakSeed(t, "SOAK_ETCD_SEED")
	began := time.Now()
	rng := rand.New(rand.NewPCG(seed, seed^0x51ed2701a3c4b5e9))
	binds := 2 + rng.IntN(2)
	t.Logf("upstream binds (the cluster's total): %d", binds)

	etcd := clustertest.StartBehindProxy(t)
	sim, simAddr := startSim(t, smpp.SimOptions{
		DLRDelay: 100 * time.Millisecond, Seed: seed | 1,
		Faults: smpp.Faults{Throttle: 0.03, Undeliv: 0.1},
	})
	x := newClusterChaos(t)
	var pxs [3]*clustertest.Proxy // each node's way to etcd, to cut it off alone
	for i := range x.nodes {
		pxs[i] = etcd.NewProxy(t)
		n := &clNode{id: i + 1, cfg: writeSoakClusterConfig(t, i+1, []string{pxs[i].Endpoint}, simAddr, binds, "")}
		// Every node reaches the others' peer listeners from 127.0.0.1,
		// where max_conns_per_addr (64) counts them together: two nodes'
		// pools of up to 64 connections each then lock one another out
		// (503 "too many connections") until the idle ones close, 90 s
		// on (seen: receipts and message lookups held that long).
		cfg, err := os.ReadFile(n.cfg)
		if err != nil {
			t.Fatal(err)
		}
		cfg = []byte(strings.Replace(string(cfg), "admin_token: test-token }", "admin_token: test-token, max_conns_per_addr: 256 }", 1))
		if err := os.WriteFile(n.cfg, cfg, 0o600); err != nil {
			t.Fatal(err)
		}
		n.net.up = make(chan struct{})
		x.nodes[i] = n
	}
	for _, n := range x.nodes {
		x.started(n, startDaemon(t, n.cfg))
	}
	t.Cleanup(func() {
		// SOAK_ETCD_LOGS=dir keeps each node's last log there.
		if dir := os.Getenv("SOAK_ETCD_LOGS"); dir != "" {
			for _, n := range x.nodes {
				_ = os.WriteFile(filepath.Join(dir, fmt.Sprintf("node%d.log", n.id)), []byte(n.proc.log()), 0o600)
			}
		}
		if t.Failed() {
			for _, n := range x.nodes {
				t.Logf("seed %d; node %d's log (last 150 lines):\n%s", seed, n.id, tail(n.proc.log(), 150))
			}
		}
	})
	allBinds := func(within time.Duration, why string) {
		t.Helper()
		waitCond(t, within, fmt.Sprintf("every carrier bind up (%s)", why), func() bool {
			now, _ := sim.Binds("up")
			return now == binds
		})
	}
	allBinds(20*time.Second, "at start")
	base1 := "http://" + x.nodes[0].proc.httpAddr
	x.webKey = issueAPIKey(t, base1, "web")
	x.bulkKey = issueAPIKey(t, base1, "bulk")

	submitCtx, stopSubmitting := context.WithCancel(context.Background())
	endCtx, end := context.WithCancel(context.Background())
	var drivers, conns sync.WaitGroup
	defer func() {
		stopSubmitting()
		end()
		drivers.Wait()
		conns.Wait()
	}()
	var roaming []*clESME
	roam := func(e *clESME, k int) *clESME {
		prng := rand.New(rand.NewPCG(seed+uint64(200+k), 3))
		// A node where the account has room (smpp.max_binds_per_account
		// 2 a node): a refused bind is a failed one, whose answers the
		// node slows down from that address.
		room := func(n *clNode) bool {
			k := 0
			for _, o := range roaming {
				o.mu.Lock()
				if o != e && o.account == e.account && o.at == n && o.conn != nil && o.conn.Context().Err() == nil {
					k++
				}
				o.mu.Unlock()
			}
			return k < 2
		}
		e.pick = func(ctx context.Context) (*clNode, string, bool) { return x.pickUp(ctx, prng, room) }
		roaming = append(roaming, e) // bound below, once all are made
		return e
	}
	var esmes []*clESME // account esme's transceivers
	for i, n := range x.nodes {
		e := roam(&clESME{x: x, node: n, account: "esme", kind: smpp.BindTransceiver, handler: x.sinks["esme"].handler()}, i)
		esmes = append(esmes, e)
		for w := range 3 {
			wrng := rand.New(rand.NewPCG(seed+uint64(10*i+w), 1))
			drivers.Go(func() { e.submitLoop(submitCtx, wrng) })
		}
	}
	var rx []*clESME
	for _, i := range []int{0, 2} {
		e := roam(&clESME{x: x, node: x.nodes[i], account: "split", kind: smpp.BindTransmitter}, 10+i)
		rx = append(rx, e)
		for w := range 2 {
			wrng := rand.New(rand.NewPCG(seed+uint64(50+10*i+w), 1))
			drivers.Go(func() { e.submitLoop(submitCtx, wrng) })
		}
	}
	rx = append(rx,
		roam(&clESME{x: x, node: x.nodes[1], account: "split", kind: smpp.BindReceiver, handler: x.sinks["split"].handler()}, 20),
		roam(&clESME{x: x, node: x.nodes[2], account: "esme4", kind: smpp.BindReceiver, handler: x.mo.handler()}, 21))
	for _, e := range roaming {
		conns.Go(func() { e.keepBound(endCtx) })
	}
	for w := range 3 {
		wrng := rand.New(rand.NewPCG(seed+uint64(100+w), 2))
		drivers.Go(func() { x.httpLoop(submitCtx, w, wrng) })
	}
	drivers.Go(func() { x.moLoop(submitCtx, sim) })
	moves := 0
	mrng := rand.New(rand.NewPCG(seed+300, 4))
	drivers.Go(func() { moves = x.moveLoop(submitCtx, mrng, roaming) })

	phases := []string{"blip", "blip", "outage", "cut", "one", "all"}
	rng.Shuffle(len(phases), func(i, j int) { phases[i], phases[j] = phases[j], phases[i] })
	t.Logf("phases: %v", phases)
	var blips, outages []time.Duration
	lostExits := 0
	for k, ph := range phases {
		gap := 2*time.Second + time.Duration(rng.Int64N(int64(time.Second)))
		tm := time.NewTimer(gap) // the chaos schedule, not a wait for an event
		<-tm.C
		x.noneExited(t)
		switch ph {
		case "blip":
			// etcd takes up to a second more to start again.
			d := 500*time.Millisecond + time.Duration(rng.Int64N(int64(time.Second)))
			took := x.blip(t, etcd, d)
			blips = append(blips, took)
			// After a blip shorter than lease_ttl the nodes go on as
			// members: each still lists the three, and the binds are all
			// held (README, *Losing etcd*: only a loss longer than
			// lease_ttl stops a node).
			x.waitMembers(t, 3*soakLeaseTTL, "after an etcd blip")
			allBinds(3*soakLeaseTTL, "after an etcd blip")
			t.Logf("phase %d: etcd down %v; %s", k+1, took.Round(time.Millisecond), x.counts())
		case "outage":
			d := soakLeaseTTL + time.Second + time.Duration(rng.Int64N(int64(3*time.Second)))
			back := x.outage(t, etcd, d)
			lostExits += len(x.nodes)
			// Not a kill: each node stopped as on SIGTERM, but with etcd
			// away; counted with the kills for the duplicates' bounds.
			x.events = append(x.events, clKill{nodes: x.nodes[:]})
			outages = append(outages, d)
			x.waitMembers(t, 3*soakLeaseTTL, "after the etcd outage")
			allBinds(3*soakLeaseTTL, "after the etcd outage")
			t.Logf("phase %d: etcd down %v, every node exited and was back after %v; %s", k+1, d.Round(time.Millisecond), back.Round(time.Millisecond), x.counts())
		case "cut":
			// One node cut off from etcd (a partition) past its lease:
			// it gives its binds up at lease_ttl/2, before etcd expires
			// its lease and the others take them (the SMSC's peak, checked
			// at the end, says whether both were ever up at once), then
			// stops with membership lost and is started again until it
			// joins once it reaches etcd again.
			v := x.bindHolder(t, rng)
			cutFor := soakLeaseTTL + time.Second + time.Duration(rng.Int64N(int64(2*time.Second)))
			pxs[v.id-1].Isolate()
			cutAt := time.Now()
			select {
			case <-v.proc.exited:
			case <-time.After(soakLeaseTTL + 20*time.Second):
				x.stuck(t, v, fmt.Sprintf("cut off from etcd still running after %v", time.Since(cutAt).Round(time.Millisecond)))
			}
			x.killed(v)
			exited := time.Since(cutAt)
			x.events = append(x.events, clKill{nodes: []*clNode{v}})
			log := v.proc.log()
			fence, lost := strings.Index(log, "giving up bind slot"), strings.Index(log, "membership lost")
			if code := v.proc.cmd.ProcessState.ExitCode(); code != 1 || lost < 0 {
				t.Errorf("node %d cut off from etcd: exit status %d, membership lost logged %v", v.id, code, lost >= 0)
			}
			if fence < 0 || fence > lost {
				t.Errorf("node %d cut off from etcd did not give its bind up before its membership was lost:\n%s", v.id, tail(log, 30))
			}
			if at := logAt(log, "membership lost"); !at.IsZero() {
				t.Logf("node %d: membership lost %v after the cut, its stop took %v", v.id, at.Sub(cutAt).Round(time.Millisecond),
					logAt(log, `"stopped"`).Sub(at).Round(time.Millisecond))
			}
			restarted := make(chan struct{})
			go func() {
				defer close(restarted)
				x.systemd(t, v, time.Minute)
			}()
			allBinds(3*soakLeaseTTL, fmt.Sprintf("node %d cut off, its lease expired", v.id))
			tm := time.NewTimer(time.Until(cutAt.Add(cutFor))) // the chaos schedule
			<-tm.C
			pxs[v.id-1].Rejoin(t)
			<-restarted
			t.Logf("phase %d: node %d cut off from etcd for %v, exited after %v, back after %v; %s", k+1, v.id,
				cutFor.Round(time.Millisecond), exited.Round(time.Millisecond), time.Since(cutAt).Round(time.Millisecond), x.counts())
			x.waitMembers(t, 3*soakLeaseTTL, "after a node's partition")
		case "one":
			v := x.bindHolder(t, rng) // the others must take its binds
			down := 2*soakLeaseTTL + time.Duration(rng.Int64N(int64(soakLeaseTTL)))
			x.kill9(t, v)
			x.events = append(x.events, clKill{nodes: []*clNode{v}})
			killedAt := time.Now()
			// Its slots free when its lease expires; the others take
			// them within their shares (README, *Carrier binds*).
			waitCond(t, 5*time.Second, fmt.Sprintf("the SMSC seeing node %d's bind gone", v.id), func() bool {
				now, _ := sim.Binds("up")
				return now < binds
			})
			allBinds(down-soakLeaseTTL/2, fmt.Sprintf("node %d down, its lease expired", v.id))
			tookOver := time.Since(killedAt)
			tm := time.NewTimer(time.Until(killedAt.Add(down))) // the chaos schedule
			<-tm.C
			x.started(v, startDaemon(t, v.cfg))
			t.Logf("phase %d: node %d killed -9 for %v (the others held every bind %v after the kill); %s", k+1, v.id,
				down.Round(time.Millisecond), tookOver.Round(time.Millisecond), x.counts())
			x.waitMembers(t, 3*soakLeaseTTL, "after a node's return")
		case "all":
			for _, v := range x.nodes {
				x.killed(v)
				if err := v.proc.cmd.Process.Signal(syscall.SIGKILL); err != nil {
					t.Fatal(err)
				}
			}
			for _, v := range x.nodes {
				<-v.proc.exited
			}
			x.events = append(x.events, clKill{nodes: x.nodes[:]})
			killedAt := time.Now()
			tm := time.NewTimer(200*time.Millisecond + time.Duration(rng.Int64N(int64(1800*time.Millisecond)))) // the chaos schedule
			<-tm.C
			for _, v := range x.nodes {
				x.started(v, startDaemon(t, v.cfg))
			}
			t.Logf("phase %d: all three killed -9, back after %v; %s", k+1, time.Since(killedAt).Round(time.Millisecond), x.counts())
			x.waitMembers(t, 3*soakLeaseTTL, "after all three were killed")
		}
	}
	tm := time.NewTimer(3 * time.Second) // a last stretch of traffic with every node up
	<-tm.C
	x.noneExited(t)
	stopSubmitting()
	drivers.Wait()
	chaosEnd := time.Now()
	t.Logf("chaos over after %v: %s; %d ESME moves", chaosEnd.Sub(began).Round(time.Millisecond), x.counts(), moves)

	x.check(t, sim, binds, nil, 0, esmes, rx)
	t.Logf("etcd blips %v, outages %v (%d exits on membership lost, all status 1), %d kill events",
		blips, outages, lostExits, len(x.events))
	t.Logf("drained and checked in %v; whole test %v", time.Since(chaosEnd).Round(time.Millisecond), time.Since(began).Round(time.Millisecond))
}

// bindHolder is a node holding a carrier bind, chosen at random.
func (x *clusterChaos) bindHolder(t *testing.T, rng *rand.Rand) *clNode {
	t.Helper()
	var holders []*clNode
	for _, n := range x.nodes {
		if metricSum(t, n.proc, "qxtd_cluster_bind_slots_held") > 0 {
			holders = append(holders, n)
		}
	}
	if len(holders) == 0 {
		t.Fatal("no node says it holds a carrier bind")
	}
	return holders[rng.IntN(len(holders))]
}

// pickUp is a node up with room, chosen at random, and its SMPP address;
// it waits (briefly, again and again) while none is.
func (x *clusterChaos) pickUp(ctx context.Context, rng *rand.Rand, room func(*clNode) bool) (*clNode, string, bool) {
	for {
		for _, i := range rng.Perm(len(x.nodes)) {
			n := x.nodes[i]
			if !room(n) {
				continue
			}
			n.net.mu.Lock()
			addr := n.net.smpp
			up := n.net.up
			n.net.mu.Unlock()
			select {
			case <-up:
				return n, addr, true
			default:
			}
		}
		tm := time.NewTimer(100 * time.Millisecond) // a reconnect's backoff
		select {
		case <-ctx.Done():
			tm.Stop()
			return nil, "", false
		case <-tm.C:
		}
	}
}

// moveLoop has one of the ESMEs unbind every 1–3 s: it binds again to a
// node picked at random. It returns how many moved.
func (x *clusterChaos) moveLoop(ctx context.Context, rng *rand.Rand, es []*clESME) int {
	moved := 0
	for {
		tm := time.NewTimer(time.Second + time.Duration(rng.Int64N(int64(2*time.Second)))) // the chaos schedule
		select {
		case <-ctx.Done():
			tm.Stop()
			return moved
		case <-tm.C:
		}
		e := es[rng.IntN(len(es))]
		e.mu.Lock()
		c := e.conn
		e.mu.Unlock()
		if c == nil {
			continue
		}
		uctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		_ = c.Unbind(uctx) // a node dying meanwhile ends it too
		cancel()
		moved++
	}
}

// noneExited fails the test for a node that exited when nothing was meant
// to stop it (a blip shorter than lease_ttl, say), and starts it again as
// systemd would, so that the soak goes on.
func (x *clusterChaos) noneExited(t *testing.T) {
	t.Helper()
	for _, n := range x.nodes {
		select {
		case <-n.proc.exited:
			t.Errorf("node %d exited unasked (status %d):\n%s", n.id, n.proc.cmd.ProcessState.ExitCode(), tail(n.proc.log(), 40))
			x.killed(n)
			x.systemd(t, n, time.Minute)
		default:
		}
	}
}

// logAt is the time of the first line of a daemon's log holding s (zero:
// none).
func logAt(log, s string) time.Time {
	for line := range strings.SplitSeq(log, "\n") {
		var rec struct{ Time time.Time }
		if strings.Contains(line, s) && json.Unmarshal([]byte(line), &rec) == nil {
			return rec.Time
		}
	}
	return time.Time{}
}

// stuck ends a node that did not exit with SIGQUIT and fails the test
// with where its goroutines were.
func (x *clusterChaos) stuck(t *testing.T, n *clNode, why string) {
	t.Helper()
	_ = n.proc.cmd.Process.Signal(syscall.SIGQUIT)
	<-n.proc.exited
	dump := n.proc.log()
	var waits []string // the shutdown's waits, whole
	for block := range strings.SplitSeq(dump, "\n\n") {
		if strings.Contains(block, "startCluster") || strings.Contains(block, "shutdown") {
			waits = append(waits, block)
		}
	}
	t.Fatalf("node %d %s; its goroutines:\n%s\nwaiting:\n%s", n.id, why, goroutineGroups(dump), strings.Join(waits, "\n\n"))
}

// kill9 kills node n -9 and waits for its exit.
func (x *clusterChaos) kill9(t *testing.T, n *clNode) {
	t.Helper()
	x.killed(n)
	if err := n.proc.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-n.proc.exited
}

// waitMembers waits until every node lists the three members.
func (x *clusterChaos) waitMembers(t *testing.T, within time.Duration, why string) {
	t.Helper()
	waitCond(t, within, "every node listing three members "+why, func() bool {
		for _, n := range x.nodes {
			addr, ok := n.addrNow()
			if !ok {
				return false
			}
			var st nodeStatus
			if _, err := getJSON("http://"+addr, "/admin/v1/status", "test-token", &st); err != nil || st.Cluster == nil || len(st.Cluster.Members) != len(x.nodes) {
				return false
			}
		}
		return true
	})
}

// blip stops etcd for at least d and sends one message through every node
// meanwhile: each must accept it with etcd down (the sending path reads no
// network: README, *Cluster*). etcd comes back once d has passed and every
// node answered, or at 2 s whatever happened: half lease_ttl, since the
// last keepalive answered may be lease_ttl/3 older than the stop.
// It returns how long etcd was down.
func (x *clusterChaos) blip(t *testing.T, etcd *clustertest.Etcd, d time.Duration) time.Duration {
	t.Helper()
	const most = soakLeaseTTL / 2
	etcd.Stop()
	stopped := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), most)
	defer cancel()
	var wg sync.WaitGroup
	answered := make([]string, len(x.nodes))
	for i, n := range x.nodes {
		wg.Go(func() {
			began := time.Now()
			defer func() { answered[i] += fmt.Sprintf(" (%v)", time.Since(began).Round(time.Millisecond)) }()
			addr, ok := n.addrNow()
			if !ok {
				answered[i] = "down"
				return
			}
			to := x.dest("1371")
			body, _ := json.Marshal(map[string]any{"to": []string{to}, "text": "etcd 不在 " + to})
			req, _ := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+addr+"/v1/messages", strings.NewReader(string(body)))
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("Authorization", "Bearer "+x.webKey)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				answered[i] = err.Error()
				return
			}
			defer resp.Body.Close()
			var res sendResult
			if resp.StatusCode != http.StatusOK || json.NewDecoder(resp.Body).Decode(&res) != nil || len(res.Results) != 1 || res.Results[0].Status != "accepted" {
				answered[i] = fmt.Sprintf("status %d %+v", resp.StatusCode, res)
				return
			}
			x.ack(res.Results[0].ID, what{kind: "blip", ent: "T1", dest: to, text: "etcd 不在 " + to})
		})
	}
	wg.Wait()
	tm := time.NewTimer(time.Until(stopped.Add(min(d, most)))) // the blip's length
	<-tm.C
	etcd.Restart(t)
	took := time.Since(stopped)
	t.Logf("etcd down %v; a send through each node answered in %v", took.Round(time.Millisecond), answered)
	for i, why := range answered {
		if !strings.HasPrefix(why, " (") {
			t.Errorf("node %d did not accept a send while etcd was down (%v): %s", i+1, took.Round(time.Millisecond), why)
		}
	}
	return took
}

// outage stops etcd for d (longer than lease_ttl). Each node must exit
// with status 1 logging "membership lost" (README, *Losing etcd*); the
// test starts it again as systemd's Restart=on-failure would, until it
// joins once etcd is back. It returns how long after the stop every node
// was back.
func (x *clusterChaos) outage(t *testing.T, etcd *clustertest.Etcd, d time.Duration) time.Duration {
	t.Helper()
	etcd.Stop()
	stopped := time.Now()
	var wg sync.WaitGroup
	exits := make([]string, len(x.nodes))
	for i, n := range x.nodes {
		wg.Go(func() {
			// Lost after lease_ttl without a keepalive's answer; the stop
			// then takes at most its 15 s.
			select {
			case <-n.proc.exited:
			case <-time.After(soakLeaseTTL + 20*time.Second):
				exits[i] = "still running"
				_ = n.proc.cmd.Process.Signal(syscall.SIGQUIT)
				<-n.proc.exited
				exits[i] += ", its goroutines:\n" + goroutineGroups(n.proc.log())
				return
			}
			x.killed(n)
			code := n.proc.cmd.ProcessState.ExitCode()
			log := n.proc.log()
			if code != 1 || !strings.Contains(log, "membership lost") {
				exits[i] = fmt.Sprintf("exit status %d after %v, membership lost logged: %v\n%s", code, time.Since(stopped).Round(time.Millisecond),
					strings.Contains(log, "membership lost"), tail(log, 30))
			}
		})
	}
	tm := time.NewTimer(d) // the outage's length
	<-tm.C
	etcd.Restart(t)
	wg.Wait()
	for i, why := range exits {
		if why != "" {
			t.Errorf("node %d, etcd down %v: %s", i+1, d.Round(time.Millisecond), why)
		}
	}
	for _, n := range x.nodes {
		select {
		case <-n.proc.exited:
		default:
			t.Fatalf("node %d did not exit after etcd was down %v", n.id, d)
		}
	}
	var starts sync.WaitGroup
	for _, n := range x.nodes {
		starts.Go(func() { x.systemd(t, n, time.Minute) })
	}
	starts.Wait()
	return time.Since(stopped)
}

// systemd starts node n again and again (Restart=on-failure, RestartSec
// 0.5 s doubling to 4 s) until it is ready, for at most within.
func (x *clusterChaos) systemd(t *testing.T, n *clNode, within time.Duration) {
	deadline := time.Now().Add(within)
	pause := 500 * time.Millisecond
	for tries := 1; ; tries++ {
		tm := time.NewTimer(pause) // RestartSec
		<-tm.C
		p, err := tryDaemonArgs(t, os.Args[0], []string{"serve", "--config", n.cfg})
		if err == nil {
			x.started(n, p)
			t.Logf("node %d started again by the test's systemd: try %d ready", n.id, tries)
			return
		}
		if time.Now().After(deadline) {
			x.problem("node %d not started again in %v (%d tries): %v", n.id, within, tries, err)
			return
		}
		pause = min(2*pause, 4*time.Second)
	}
}
