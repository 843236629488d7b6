//go:build soak

package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/pem"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/fiorix/go-smpp/smpp/pdu"

	"github.com/qxtd/qxtd/smpp"
)

// The upstream bound over TLS under faults: the daemon as a subprocess
// whose upstream (tls: true, tls_ca_file, tls_server_name) binds to a TLS
// front the test owns, which relays the frames to a plaintext simulator.
const (
	tsBinds       = 2 // transceivers
	tsWindow      = 10
	tsRespTimeout = 2 * time.Second
	tsDLRWindow   = 128
	tsServerName  = "smsc.test"
	// tsDialTimeout is smpp.ClientOptions.DialTimeout's default, which
	// the upstreams use: it bounds a bind's TCP connect, TLS handshake and
	// bind_transceiver_resp.
	tsDialTimeout = 10 * time.Second
)

// TestSoakUpstreamTLS runs the real daemon with its upstream bound over
// TLS, under steady load (two ESMEs submitting short and long texts with
// receipts asked), and faults in a seeded order (SOAK_UPSTREAM_TLS_SEED
// replays one):
//
//   - drop: every TLS connection closed, both ways, with submits out;
//   - stall: the connections dropped and new ones accepted but left
//     without a word (no ServerHello) for longer than the bind's 10 s
//     deadline, so that every bind times out; then let through;
//   - wrong-ca, wrong-name: the connections dropped and, for 2–3.5 s, a
//     certificate served that the daemon must refuse (signed by a CA not
//     in tls_ca_file; of the right CA but for another name); then the
//     right one again;
//   - rotate-ca: a new CA written to tls_ca_file, SIGHUP, the front
//     switched to a certificate of the new CA (the connections dropped):
//     the binds come back without a restart;
//   - a SIGTERM and a kill -9 (each daemon restarted).
//
// Then, drained: every acknowledged message is final as sent; every
// segment reached the SMSC, twice only where the front's ledger shows
// its answer cut by a drop, late, or the daemon killed; every receipt
// reached its ESME, again only across a kill -9; the usage is the
// delivered segments; no handshake and no bind completed with a
// certificate the daemon must refuse; each stall saw binds abandoned at
// their deadline; nothing was logged at error level; every SIGTERM
// exited 0.
func TestSoakUpstreamTLS(t *testing.T) {
	seed := soakSeed(t, "SOAK_UPSTREAM_TLS_SEED")
	rng := rand.New(rand.NewPCG(seed, seed^0x5be0cd19137e2179))
	began := time.Now()
	dir := t.TempDir()
	ca1 := newTestCA(t, dir, "smsc-ca-1")
	ca2 := newTestCA(t, dir, "smsc-ca-2")
	rogue := newTestCA(t, dir, "rogue-ca")
	caFile := filepath.Join(dir, "smsc-ca.pem")
	tsWriteCA(t, caFile, ca1)

	sim, simAddr := startSim(t, smpp.SimOptions{DLRDelay: 100 * time.Millisecond, Seed: seed | 1, Faults: smpp.Faults{Undeliv: 0.05}})
	s := &tsSoak{frontSoak: newFrontSoak(t, began), sim: sim, caNow: "ca1"}
	certs := map[string]tls.Certificate{}
	issue := func(name string, ca *testCA, serial int64, host string) {
		c, k := ca.issue(t, serial, host)
		kp, err := tls.X509KeyPair(c, k)
		if err != nil {
			t.Fatal(err)
		}
		certs[name] = kp
	}
	issue("ca1", ca1, 11, tsServerName)
	issue("ca2", ca2, 21, tsServerName)
	issue("rogue", rogue, 31, tsServerName)  // the right name, another CA
	issue("name-ca1", ca1, 12, "other.test") // the right CA, another name
	issue("name-ca2", ca2, 22, "other.test") // the same after the rotation
	s.refuse = map[string]bool{"rogue": true, "name-ca1": true, "name-ca2": true}
	s.front = newTLSFront(t, simAddr, certs, "ca1")
	t.Logf("seed %d", seed)

	s.cfg = filepath.Join(dir, "qxtd.yaml")
	cfg := fmt.Sprintf(`smpp: { listen: 127.0.0.1:0 }
http: { listen: 127.0.0.1:0, admin_token: test-token }
store: { path: %s }
simulator: { enabled: false }
upstreams:
  - name: up
    addr: %s
    system_id: up
    password: uppw
    binds: %d
    window: %d
    resp_timeout: %s
    enquire_link: 1s
    reconnect_max: 1s
    tls: true
    tls_ca_file: %s
    tls_server_name: %s
delivery: { retry_min: 100ms, retry_max: 1s, dlr_retry: 500ms, dlr_window: %d }
policy: { bcrypt_cost: 4 }
enterprises:
  - code: T1
    signature: "【测试】"
    package: 12
    national: true
    offnet: true
    no_whitelist: true
    tps: 100000
accounts:
  - { system_id: esme1, password: secret1, enterprise: T1 }
  - { system_id: esme2, password: secret1, enterprise: T1 }
  - { system_id: web, password: secret1, enterprise: T1, admin: true }
`, filepath.Join(dir, "qxtd.db"), s.front.addr, tsBinds, tsWindow, tsRespTimeout, caFile, tsServerName, tsDLRWindow)
	writeFile(t, s.cfg, []byte(cfg))
	s.caFile, s.ca2 = caFile, ca2

	s.start()
	s.waitBinds(t, 10*time.Second, "the start")
	base := "http://" + s.daemon().httpAddr
	s.x.webKey = issueAPIKey(t, base, "web")

	loadCtx, stopLoad := context.WithCancel(context.Background())
	endCtx, end := context.WithCancel(context.Background())
	var drivers, conns sync.WaitGroup
	defer func() {
		stopLoad()
		end()
		drivers.Wait()
		conns.Wait()
	}()
	var esmes []*chaosESME
	for i := range 2 {
		account := fmt.Sprintf("esme%d", i+1)
		e := &chaosESME{x: s.x, n: i + 1, system: account, handler: s.receiptHandler(account)}
		esmes = append(esmes, e)
		conns.Go(func() { e.keepBound(endCtx) })
	}
	for i, e := range esmes {
		for w := range 3 {
			wrng := rand.New(rand.NewPCG(seed+uint64(10*i+w), 7))
			drivers.Go(func() {
				e.submitPaced(loadCtx, wrng, func() string { return s.x.dest(fmt.Sprintf("139%d", 5+i)) }, "tlssoak", 4, 7)
			})
		}
	}

	names := []string{"drop", "stall", "wrong-ca", "wrong-name", "rotate-ca", "sigterm", "kill -9"}
	rng.Shuffle(len(names), func(i, j int) { names[i], names[j] = names[j], names[i] })
	t.Logf("faults: %v", names)
	for _, name := range names {
		gap := time.Second + time.Duration(rng.Int64N(int64(time.Second)))
		tm := time.NewTimer(gap) // the chaos schedule, not a wait for an event
		<-tm.C
		s.fault(t, name, rng)
		t.Logf("%6.2fs %s: %s", time.Since(began).Seconds(), s.lastEvent(), s.x.counts())
	}
	calm := time.NewTimer(1500 * time.Millisecond) // clean traffic after the faults: the schedule
	<-calm.C
	stopLoad()
	drivers.Wait()
	t.Logf("load over after %v: %s", time.Since(began).Round(time.Millisecond), s.x.counts())

	s.check(t, "http://"+s.daemon().httpAddr)

	end()
	conns.Wait()
	d := s.daemon()
	took := stopDaemon(t, d, "the last SIGTERM")
	s.checkLogs(t)
	t.Logf("last SIGTERM: exit in %v; whole test %v (seed %d)", took.Round(time.Millisecond), time.Since(began).Round(time.Millisecond), seed)
	if t.Failed() {
		t.Logf("seed %d; the last daemon's log:\n%s", seed, tail(d.log(), 150))
	}
}

// tsWriteCA writes ca's certificate as the bundle at path, by rename, as
// a deployment tool would.
func tsWriteCA(t *testing.T, path string, ca *testCA) {
	t.Helper()
	b := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.cert.Raw})
	tmp := path + ".new"
	writeFile(t, tmp, b)
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

type tsSoak struct {
	frontSoak
	sim    *smpp.Simulator
	front  *tlsFront
	caFile string
	ca2    *testCA
	refuse map[string]bool // the certificates the daemon must refuse

	// under mu
	caNow   string // the CA of tls_ca_file: ca1, then ca2
	wrong   []tsWrong
	stalls  []tsStall
	rotated bool
}

// tsWrong is one phase with a certificate the daemon must refuse.
type tsWrong struct {
	cert             string
	from, to         time.Time
	refusedHandshake int // handshakes the daemon broke off meanwhile
	okDuring         int // handshakes completed with it meanwhile
	bindsDuring      int // binds through it meanwhile
	bindsAtEnd       int // binds at the SMSC at its end
}

// tsStall is one phase with handshakes left unanswered.
type tsStall struct {
	hold       time.Duration
	held       int // connections left without a word
	abandoned  int // of them, closed by the daemon before the release
	bindsAtEnd int
}

// start runs the next daemon and points the ESMEs at it.
func (s *tsSoak) start() {
	s.x.net.set(s.startNext(&s.front.relayFront))
}

// waitBinds waits until the SMSC has every transceiver bound, each
// through a connection of the front that serves the certificate of now.
func (s *tsSoak) waitBinds(t *testing.T, within time.Duration, after string) {
	t.Helper()
	waitCond(t, within, "every transceiver bound at the SMSC over TLS with certificate "+s.front.serving()+" after "+after, func() bool {
		n, _ := s.sim.BindsOfKind("up", smpp.BindTransceiver)
		return n == tsBinds && s.front.boundWith(s.front.serving()) == tsBinds
	})
}

func (s *tsSoak) fault(t *testing.T, name string, rng *rand.Rand) {
	dur := func(lo, hi time.Duration) time.Duration { return lo + time.Duration(rng.Int64N(int64(hi-lo))) }
	f := s.front
	switch name {
	case "drop":
		// With submits out: the SMSC's answers are withheld until a few
		// are out (the load sends some 75 a second), then every
		// connection is closed, the answers never sent.
		f.withhold(true)
		waitCond(t, 1500*time.Millisecond, "submits out at the front", func() bool { return f.out() >= 3 })
		n := f.dropAll()
		f.withhold(false)
		took := time.Now()
		s.waitBinds(t, 10*time.Second, name)
		s.event("TLS connections dropped (%d) with %d submits out (answers withheld), bound again in %v", n, f.lastDropOut(), time.Since(took).Round(time.Millisecond))
	case "stall":
		// Longer than the bind's deadline: every bind tried meanwhile
		// times out in its handshake.
		hold := dur(tsDialTimeout+time.Second, tsDialTimeout+2500*time.Millisecond)
		f.stall(true)
		n := f.dropAll()
		tm := time.NewTimer(hold) // the fault's length
		<-tm.C
		st := tsStall{hold: hold}
		st.bindsAtEnd, _ = s.sim.BindsOfKind("up", smpp.BindTransceiver)
		st.held, st.abandoned = f.stall(false)
		s.mu.Lock()
		s.stalls = append(s.stalls, st)
		s.mu.Unlock()
		released := time.Now()
		s.waitBinds(t, 10*time.Second, name)
		s.event("TLS connections dropped (%d) and handshakes stalled %v: %d held, %d given up by the daemon at its deadline and the rest let through, binds at its end %d; bound again in %v",
			n, hold.Round(10*time.Millisecond), st.held, st.abandoned, st.bindsAtEnd, time.Since(released).Round(time.Millisecond))
	case "wrong-ca", "wrong-name":
		s.mu.Lock()
		caNow := s.caNow
		s.mu.Unlock()
		// Another CA's certificate: the rogue CA's, or after the
		// rotation the retired CA's (tls_ca_file no longer has it).
		bad := "rogue"
		if caNow == "ca2" && rng.IntN(2) == 0 {
			bad = "ca1"
		}
		if name == "wrong-name" {
			bad = "name-" + caNow
		}
		hold := dur(2*time.Second, 3500*time.Millisecond)
		w := tsWrong{cert: bad, from: time.Now()}
		f0 := f.counts(bad)
		f.serve(bad)
		n := f.dropAll()
		tm := time.NewTimer(hold) // the fault's length
		<-tm.C
		w.bindsAtEnd, _ = s.sim.BindsOfKind("up", smpp.BindTransceiver)
		f.serve(caNow)
		w.to = time.Now()
		f1 := f.counts(bad)
		w.refusedHandshake, w.okDuring, w.bindsDuring = f1.fail-f0.fail, f1.ok-f0.ok, f1.binds-f0.binds
		if w.okDuring != 0 || w.bindsDuring != 0 {
			// A daemon that took it stays bound through it: those
			// connections are closed, for the soak to go on (checked
			// again at the end).
			t.Errorf("%s: certificate %q served, which the daemon must refuse: %d handshakes completed, %d binds; %d connections through it closed",
				name, bad, w.okDuring, w.bindsDuring, f.dropCert(bad))
		}
		s.mu.Lock()
		s.wrong = append(s.wrong, w)
		s.mu.Unlock()
		s.waitBinds(t, 10*time.Second, name)
		s.event("%s: TLS connections dropped (%d) and certificate %q served %v: %d handshakes refused by the daemon, binds at its end %d; bound again in %v",
			name, n, bad, hold.Round(10*time.Millisecond), w.refusedHandshake, w.bindsAtEnd, time.Since(w.to).Round(time.Millisecond))
	case "rotate-ca":
		d := s.daemon()
		tsWriteCA(t, s.caFile, s.ca2)
		skip := strings.Count(d.log(), `"msg":"upstream TLS CA bundle reloaded"`)
		if err := d.cmd.Process.Signal(syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
		d.waitLog(t, "upstream TLS CA bundle reloaded", skip, 10*time.Second)
		s.mu.Lock()
		s.caNow, s.rotated = "ca2", true
		s.mu.Unlock()
		f.serve("ca2")
		n := f.dropAll()
		took := time.Now()
		s.waitBinds(t, 10*time.Second, name)
		select {
		case <-d.exited:
			t.Errorf("the daemon exited at the CA rotation:\n%s", tail(d.log(), 50))
		default:
		}
		if s.daemon() != d {
			t.Errorf("the daemon was restarted at the CA rotation")
		}
		s.event("CA rotated (tls_ca_file holds the new CA alone, SIGHUP), TLS connections dropped (%d); bound again with the new CA's certificate in %v, same daemon",
			n, time.Since(took).Round(time.Millisecond))
	case "sigterm":
		d := s.daemon()
		s.x.net.down()
		stopped := time.Now()
		took := stopDaemon(t, d, "SIGTERM")
		s.mu.Lock()
		s.termTook = append(s.termTook, took.Round(10*time.Millisecond))
		s.mu.Unlock()
		s.start()
		s.waitBinds(t, 10*time.Second, name)
		s.event("SIGTERM: exit 0 in %v, restarted and bound again in %v", took.Round(time.Millisecond), (time.Since(stopped) - took).Round(time.Millisecond))
	case "kill -9":
		d := s.daemon()
		s.x.net.down()
		now := s.kill9(t, d)
		s.start()
		s.waitBinds(t, 10*time.Second, name)
		s.event("kill -9, restarted and bound again in %v", time.Since(now).Round(time.Millisecond))
	default:
		t.Fatalf("no fault %q", name)
	}
}

// explain is why the copy e (nil: the front never read its answer) was
// followed by another, as bmSoak.explain.
func (s *tsSoak) explain(e *bmSubmit) string {
	if e == nil {
		return bmWhyCut
	}
	s.mu.Lock()
	k, killed := s.killGen[e.gen]
	s.mu.Unlock()
	// A kill explains it only on a connection the kill ended: one a drop
	// closed before is the drop's (its answers withheld, never relayed).
	endedByKill := e.connEnd.IsZero() || !e.connEnd.Before(k.Add(-100*time.Millisecond))
	if killed && endedByKill && (e.relayed.IsZero() || (!e.relayed.After(k) && k.Sub(e.relayed) < time.Second)) {
		return bmWhyKill
	}
	return explainCut(e, s.front.dropTimes(), tsRespTimeout)
}

// check verifies the guarantees once everything drained.
func (s *tsSoak) check(t *testing.T, base string) {
	x := s.x
	drain := 60 * time.Second
	x.mu.Lock()
	acked := maps.Clone(x.acked)
	x.mu.Unlock()

	// 1 and 2: the messages final as sent, the outbox against the SMSC.
	got, outbox, received, copies, segments, delivered := checkOutbox(t, drain, base, x.webKey, acked, s.sim)

	// 3. Segments taken twice, each explained by the ledger.
	f := s.front
	why, dups, submits, killBound := f.checkCopies(t, &s.frontSoak, copies, s.explain, tsBinds, tsWindow)
	s.mu.Lock()
	kills := slices.Clone(s.kills)
	s.mu.Unlock()

	// 4. Receipts: every one asked at its ESME with its message's state,
	// again after an answer only across a kill -9.
	rcptAgain, _ := s.checkReceipts(t, drain, acked, got, outbox, tsDLRWindow)
	s.mu.Lock()
	wrong := slices.Clone(s.wrong)
	stalls := slices.Clone(s.stalls)
	rotated := s.rotated
	events := slices.Clone(s.events)
	termTook := slices.Clone(s.termTook)
	s.mu.Unlock()

	// 5. TLS: no handshake and no bind ever completed with a certificate
	// the daemon must refuse; each such phase saw it refuse some (it
	// tried); each stall had binds abandoned at their deadline; after the
	// rotation the binds are on the new CA's certificate.
	f.mu.Lock()
	hsOK, hsFailed, binds := maps.Clone(f.hsOK), maps.Clone(f.hsFailed), maps.Clone(f.binds)
	withheld, releasedOK := f.withheld, f.releasedOK
	f.mu.Unlock()
	for cert := range s.refuse {
		if hsOK[cert] > 0 || binds[cert] > 0 {
			t.Errorf("certificate %q, which the daemon must refuse: %d handshakes completed, %d binds", cert, hsOK[cert], binds[cert])
		}
	}
	for _, w := range wrong {
		if w.refusedHandshake == 0 {
			t.Errorf("certificate %q served %v–%v: the daemon tried no handshake", w.cert, s.since(w.from), s.since(w.to))
		}
		if w.okDuring != 0 || w.bindsDuring != 0 {
			t.Errorf("certificate %q served %v–%v, which the daemon must refuse: %d handshakes completed, %d binds", w.cert, s.since(w.from), s.since(w.to), w.okDuring, w.bindsDuring)
		}
		if w.bindsAtEnd != 0 {
			t.Errorf("certificate %q served %v–%v: %d binds at the SMSC at its end", w.cert, s.since(w.from), s.since(w.to), w.bindsAtEnd)
		}
	}
	for _, st := range stalls {
		if st.abandoned == 0 || st.bindsAtEnd != 0 {
			t.Errorf("handshakes stalled %v: %d connections held, %d given up by the daemon, %d binds at its end", st.hold, st.held, st.abandoned, st.bindsAtEnd)
		}
	}
	// Handshakes let through late, and binds retried after a refused
	// certificate, never leave more binds at the SMSC than configured.
	if _, peak := s.sim.BindsOfKind("up", smpp.BindTransceiver); peak > tsBinds {
		t.Errorf("the SMSC saw %d transceivers at once; binds: %d", peak, tsBinds)
	}
	if rotated && binds["ca2"] == 0 {
		t.Errorf("no bind with the new CA's certificate after the rotation")
	}
	x.mu.Lock()
	for _, c := range x.conflicts {
		t.Errorf("conflict: %s", c)
	}
	x.mu.Unlock()

	t.Logf("events: %s", strings.Join(events, "; "))
	t.Logf("%d acknowledged, %d messages, %d segments, %d delivered; %d submit_sm at the front, %d taken by the SMSC", len(acked), len(outbox), segments, delivered, submits, len(received))
	t.Logf("segments taken twice: %d, by cause %v (kills %d, bound %d); answers withheld and cut by the drop %d; receipts again at the ESMEs %d", dups, why, len(kills), killBound, withheld, rcptAgain)
	_, peak := s.sim.BindsOfKind("up", smpp.BindTransceiver)
	t.Logf("TLS handshakes completed by certificate %v (%d of them held by a stall), refused %v; binds by certificate %v, at most %d at once; SIGTERM exits %v; kills at %v",
		hsOK, releasedOK, hsFailed, binds, peak, termTook, s.since(kills...))
}

// tsAllowedErrors are the error-level log lines the faults explain, by
// msg: none so far.
var tsAllowedErrors = map[string]string{}

// checkLogs: no daemon logged at error level but for tsAllowedErrors.
func (s *tsSoak) checkLogs(t *testing.T) {
	tlsErrs := map[string]int{}
	warns := s.scanLogs(t, tsAllowedErrors, func(msg, err string) {
		if msg == "upstream bind failed" {
			tlsErrs[tsErrKind(err)]++
		}
	})
	t.Logf("warnings logged: %v; upstream bind failures by cause: %v", warns, tlsErrs)
	// Each connection a stall held and the daemon gave up is a bind that
	// timed out in its handshake, and says so.
	abandoned := 0
	s.mu.Lock()
	for _, st := range s.stalls {
		abandoned += st.abandoned
	}
	s.mu.Unlock()
	if n := tlsErrs["deadline exceeded"] + tlsErrs["i/o timeout"]; n < abandoned {
		t.Errorf("%d binds given up in a stalled handshake, %d logged as timed out", abandoned, n)
	}
}

// tsErrKind names the cause of a failed bind for the summary.
func tsErrKind(err string) string {
	for _, k := range []string{"certificate signed by unknown authority", "certificate is valid for", "i/o timeout", "deadline exceeded", "connection reset", "EOF", "refused"} {
		if strings.Contains(err, k) {
			return k
		}
	}
	return err
}

// tlsFront is the SMSC as the daemon sees it: a TLS listener serving
// the certificate of the moment, relaying each connection's frames to
// the simulator in plaintext, with bmFront's ledger of submit_sm. It
// counts the handshakes and binds by the certificate served.
type tlsFront struct {
	relayFront
	certs map[string]tls.Certificate

	// under mu
	cur      string // the certificate served to new handshakes
	stalled  bool
	release  chan struct{}
	held     []*tsHeld
	conns    map[*tsConn]bool
	hsOK     map[string]int
	hsFailed map[string]int
	binds    map[string]int
	drops    []time.Time
	dropOut  int  // submits out at the last drop
	holdResp bool // submit_sm_resp not relayed (lost at the next drop)
	// releasedOK counts the handshakes held by a stall and completed
	// after it.
	releasedOK int
	withheld   int
}

type tsHeld struct {
	raw       net.Conn
	abandoned atomic.Bool
}

// tsPrefixConn reads r (what was read before, then the connection).
type tsPrefixConn struct {
	net.Conn
	r io.Reader
}

func (c *tsPrefixConn) Read(b []byte) (int, error) { return c.r.Read(b) }

type tsConn struct {
	*relayConn
	f     *tlsFront
	cert  string
	bound bool // under f.mu
}

func newTLSFront(t *testing.T, target string, certs map[string]tls.Certificate, cur string) *tlsFront {
	t.Helper()
	f := &tlsFront{certs: certs, cur: cur, conns: map[*tsConn]bool{},
		hsOK: map[string]int{}, hsFailed: map[string]int{}, binds: map[string]int{}}
	f.listen(t, target, f.handle, func() {
		f.stall(false)
		f.dropAll()
	})
	return f
}

func (f *tlsFront) serve(cert string) {
	f.mu.Lock()
	f.cur = cert
	f.mu.Unlock()
}

func (f *tlsFront) serving() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.cur
}

type tsCount struct{ ok, fail, binds int }

// counts are the handshakes completed and refused, and the binds, with
// cert so far.
func (f *tlsFront) counts(cert string) tsCount {
	f.mu.Lock()
	defer f.mu.Unlock()
	return tsCount{f.hsOK[cert], f.hsFailed[cert], f.binds[cert]}
}

// stall on: new connections are accepted and left without a word. Off:
// they go on to their handshake; held reports how many were held and
// how many of them the daemon had closed by then.
func (f *tlsFront) stall(on bool) (held, abandoned int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if on && !f.stalled {
		f.stalled, f.release, f.held = true, make(chan struct{}), nil
		return 0, 0
	}
	if !on && f.stalled {
		f.stalled = false
		close(f.release)
		for _, h := range f.held {
			if h.abandoned.Load() {
				abandoned++
			}
		}
		return len(f.held), abandoned
	}
	return 0, 0
}

// boundWith counts the live connections bound with cert.
func (f *tlsFront) boundWith(cert string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for c := range f.conns {
		if c.bound && c.cert == cert {
			n++
		}
	}
	return n
}

func (f *tlsFront) withhold(on bool) {
	f.mu.Lock()
	f.holdResp = on
	f.mu.Unlock()
}

// out counts the submits the SMSC has not answered to the daemon.
func (f *tlsFront) out() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for c := range f.conns {
		n += len(c.pending)
	}
	return n
}

func (f *tlsFront) dropTimes() []time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.drops)
}

func (f *tlsFront) lastDropOut() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.dropOut
}

// dropCert closes the connections made with cert.
func (f *tlsFront) dropCert(cert string) int {
	f.mu.Lock()
	var conns []*tsConn
	for c := range f.conns {
		if c.cert == cert {
			conns = append(conns, c)
		}
	}
	f.drops = append(f.drops, time.Now())
	f.mu.Unlock()
	for _, c := range conns {
		c.close()
	}
	return len(conns)
}

// dropAll closes every relayed connection, both ways.
func (f *tlsFront) dropAll() int {
	f.mu.Lock()
	conns := slices.Collect(maps.Keys(f.conns))
	out := 0
	for _, c := range conns {
		out += len(c.pending)
	}
	f.dropOut = out
	f.drops = append(f.drops, time.Now())
	f.mu.Unlock()
	for _, c := range conns {
		c.close()
	}
	return len(conns)
}

// handle takes one connection through its handshake (after a stall,
// if one is on) and relays it.
func (f *tlsFront) handle(raw net.Conn) {
	released := false
	f.mu.Lock()
	if f.stalled {
		h := &tsHeld{raw: raw}
		f.held = append(f.held, h)
		release := f.release
		f.mu.Unlock()
		// Held: say nothing. What the daemon sends (its ClientHello) is
		// kept; a read ending otherwise than at the release's deadline
		// is the daemon giving up.
		gone := make(chan struct{})
		var sent []byte
		go func() {
			defer close(gone)
			b := make([]byte, 4096)
			for {
				n, err := raw.Read(b)
				sent = append(sent, b[:n]...)
				if err != nil {
					if ne, ok := err.(net.Error); !ok || !ne.Timeout() {
						h.abandoned.Store(true)
					}
					return
				}
			}
		}()
		select {
		case <-release:
			_ = raw.SetReadDeadline(time.Now())
			<-gone
		case <-gone:
		}
		if h.abandoned.Load() {
			_ = raw.Close()
			return
		}
		// Let through: the handshake goes on from what was sent.
		_ = raw.SetReadDeadline(time.Time{})
		raw = &tsPrefixConn{Conn: raw, r: io.MultiReader(bytes.NewReader(sent), raw)}
		released = true
		f.mu.Lock()
	}
	f.mu.Unlock()
	var cert string
	client := tls.Server(raw, &tls.Config{
		MinVersion: tls.VersionTLS12,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			f.mu.Lock()
			cert = f.cur
			f.mu.Unlock()
			c := f.certs[cert]
			return &c, nil
		},
	})
	_ = raw.SetDeadline(time.Now().Add(5 * time.Second))
	if err := client.Handshake(); err != nil {
		f.mu.Lock()
		f.hsFailed[cert]++
		f.mu.Unlock()
		_ = raw.Close()
		return
	}
	_ = raw.SetDeadline(time.Time{})
	server, err := net.DialTimeout("tcp", f.target, 2*time.Second)
	if err != nil {
		_ = raw.Close()
		return
	}
	f.mu.Lock()
	f.hsOK[cert]++
	if released {
		f.releasedOK++
	}
	c := &tsConn{f: f, cert: cert}
	c.relayConn = f.relay(client, server, relayHooks{withhold: f.withholding, bound: c.bindOK, closed: func() { delete(f.conns, c) }})
	f.conns[c] = true
	f.mu.Unlock()
	f.run(c.relayConn)
}

// withholding keeps a submit_sm_resp from the daemon while withhold is
// on: still out for the daemon, the drop coming cuts it (under f.mu).
func (f *tlsFront) withholding() bool {
	if f.holdResp {
		f.withheld++
		return true
	}
	return false
}

// bindOK counts a bind the SMSC answered OK by the certificate of its
// connection (under f.mu).
func (c *tsConn) bindOK(pdu.ID) {
	c.f.binds[c.cert]++
	c.bound = true
}
