package gateway_test

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fiorix/go-smpp/smpp/pdu"
	"github.com/fiorix/go-smpp/smpp/pdu/pdufield"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/qxtd/qxtd/gateway"
	"github.com/qxtd/qxtd/queue"
	"github.com/qxtd/qxtd/smpp"
)

// lostBindSMSC is an SMSC that lost its first session's bound state
// while the TCP connection stayed up (a front end restarted or failed
// over): on the first bind it answers every submit_sm ESME_RINVBNDSTS,
// in a submit_sm_resp or a generic_nack (nack), until qxtd closes it;
// every later bind takes submit_sm.
type lostBindSMSC struct {
	nack bool

	mu       sync.Mutex
	binds    int            // binds answered
	refused  int            // submit_sm answered ESME_RINVBNDSTS
	accepted map[string]int // destination_addr → submit_sm taken
	errs     []error
	// firstClosed is closed when the first bind's connection has ended
	// (qxtd unbound or closed it), rebound when a second bind is made.
	firstClosed, rebound chan struct{}
}

func newLostBindSMSC(t *testing.T, nack bool) (*lostBindSMSC, string) {
	t.Helper()
	s := &lostBindSMSC{nack: nack, accepted: map[string]int{},
		firstClosed: make(chan struct{}), rebound: make(chan struct{})}
	l := listen(t)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	t.Cleanup(func() {
		_ = l.Close()
		mu.Lock()
		for _, nc := range conns {
			_ = nc.Close()
		}
		mu.Unlock()
		wg.Wait()
		s.mu.Lock()
		defer s.mu.Unlock()
		for _, err := range s.errs {
			t.Errorf("SMSC: %v", err)
		}
	})
	wg.Go(func() {
		for {
			nc, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, nc)
			mu.Unlock()
			wg.Go(func() { s.serve(nc) })
		}
	})
	return s, l.Addr().String()
}

func (s *lostBindSMSC) fail(err error) {
	s.mu.Lock()
	s.errs = append(s.errs, err)
	s.mu.Unlock()
}

// serve answers one connection until it closes.
func (s *lostBindSMSC) serve(nc net.Conn) {
	defer nc.Close()
	r := bufio.NewReader(nc)
	bind := 0 // this connection's bind: 1 the first, lost one
	defer func() {
		if bind == 1 {
			close(s.firstClosed) // qxtd unbound it or closed the connection
		}
	}()
	send := func(p pdu.Body, seq uint32) bool {
		p.Header().Seq = seq
		var b bytes.Buffer
		if err := p.SerializeTo(&b); err != nil {
			s.fail(err)
			return false
		}
		_, err := nc.Write(b.Bytes())
		return err == nil
	}
	refuse := func(p pdu.Body, id pdu.ID, seq uint32) bool {
		if s.nack {
			n := pdu.NewGenericNACK()
			n.Header().Status = smpp.StatusInvalidBindStatus
			return send(n, seq)
		}
		p.Header().ID, p.Header().Status = id, smpp.StatusInvalidBindStatus
		return send(p, seq)
	}
	for {
		f, err := smpp.ReadFrame(r)
		if err != nil {
			if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
				s.fail(fmt.Errorf("bind %d: read: %w", bind, err))
			}
			return
		}
		p, err := smpp.Decode(f)
		if err != nil {
			s.fail(fmt.Errorf("decode: %w", err))
			return
		}
		h := p.Header()
		switch h.ID {
		case pdu.BindTransceiverID:
			s.mu.Lock()
			s.binds++
			bind = s.binds
			s.mu.Unlock()
			if bind == 2 {
				close(s.rebound)
			}
			resp := pdu.NewBindTransceiverResp()
			_ = resp.Fields().Set(pdufield.SystemID, "lostbind")
			if !send(resp, h.Seq) {
				return
			}
		case pdu.EnquireLinkID:
			if !send(pdu.NewEnquireLinkResp(), h.Seq) {
				return
			}
		case pdu.UnbindID:
			if bind == 1 {
				// It does not know the session bound, so not this either.
				_ = refuse(pdu.NewUnbindResp(), pdu.UnbindRespID, h.Seq)
			} else {
				_ = send(pdu.NewUnbindResp(), h.Seq)
			}
			return
		case pdu.SubmitSMID:
			if bind == 1 {
				s.mu.Lock()
				s.refused++
				s.mu.Unlock()
				if !refuse(pdu.NewSubmitSMResp(), pdu.SubmitSMRespID, h.Seq) {
					return
				}
				continue
			}
			dst := smpp.Str(p, pdufield.DestinationAddr)
			s.mu.Lock()
			s.accepted[dst]++
			id := fmt.Sprintf("lb%d", len(s.accepted))
			s.mu.Unlock()
			if !send(smpp.NewSubmitSMResp(id), h.Seq) {
				return
			}
		default:
			s.fail(fmt.Errorf("qxtd sent %s", h.ID))
		}
	}
}

// TestBindLostIsRebound: an SMSC that lost qxtd's bind behind a TCP
// connection that stayed up answers submit_sm ESME_RINVBNDSTS, in a
// submit_sm_resp or a generic_nack. qxtd takes that bind down, unbinds
// and closes it and binds again, and the refused segments go out on the
// new bind: each taken once, none rejected (they were, for good, with the
// bind kept and refusing everything after); counted as bind_lost and one
// disconnect.
func TestBindLostIsRebound(t *testing.T) {
	for _, tc := range []struct {
		name string
		nack bool
	}{{"submit_sm_resp", false}, {"generic_nack", true}} {
		t.Run(tc.name, func(t *testing.T) {
			smsc, addr := newLostBindSMSC(t, tc.nack)
			var logs lockedBuffer
			r := newRig(t, rigOpts{upstream: func(u *gateway.UpstreamConfig) {
				u.Addr, u.Binds, u.Window = addr, 1, 5
			}, log: slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelInfo}))})
			waitFor(t, 10*time.Second, "the first bind", func() bool { return !r.gw.Health().Degraded() })
			e, err := r.bind("esme", "pw", smpp.BindTransceiver)
			if err != nil {
				t.Fatal(err)
			}
			const n = 20
			ids := submitN(t, e, n, "1380077")
			if len(ids) != n {
				t.Fatalf("%d ids", len(ids))
			}
			waitFor(t, 20*time.Second, fmt.Sprintf("%d parts submitted or rejected", n), func() bool {
				c := r.store.Counts()
				return c[queue.StateSubmitted]+c[queue.StateRejected] == n
			})
			if c := r.store.Counts(); c[queue.StateRejected] != 0 {
				t.Errorf("%d of %d parts rejected, %d submitted: want every part submitted, none rejected",
					c[queue.StateRejected], n, c[queue.StateSubmitted])
			}
			for what, ch := range map[string]chan struct{}{"the lost bind to end": smsc.firstClosed, "a new bind": smsc.rebound} {
				select {
				case <-ch:
				case <-time.After(10 * time.Second):
					t.Fatalf("timed out waiting for %s", what)
				}
			}
			smsc.mu.Lock()
			refused, binds := smsc.refused, smsc.binds
			if len(smsc.accepted) != n {
				t.Errorf("SMSC took %d distinct messages, want %d", len(smsc.accepted), n)
			}
			for dst, k := range smsc.accepted {
				if k != 1 {
					t.Errorf("SMSC took the message to %s %d times", dst, k)
				}
			}
			smsc.mu.Unlock()
			if refused == 0 {
				t.Fatal("the SMSC refused no submit_sm on the lost bind: nothing tested")
			}
			t.Logf("%d submit_sm refused on the lost bind", refused)
			// One warning for the lost bind, however many of its requests
			// were refused.
			var warned int
			for _, line := range strings.Split(logs.String(), "\n") {
				if strings.Contains(line, "ESME_RINVBNDSTS") {
					if !strings.Contains(line, `"level":"WARN"`) {
						t.Errorf("logged not as a warning: %s", line)
					}
					warned++
				}
			}
			if warned != 1 {
				t.Errorf("%d log lines name ESME_RINVBNDSTS, want 1:\n%s", warned, logs.String())
			}
			if binds != 2 {
				t.Errorf("%d binds, want 2 (the lost one and the new one)", binds)
			}
			const want = `
# HELP qxtd_upstream_disconnects_total Upstream binds lost.
# TYPE qxtd_upstream_disconnects_total counter
qxtd_upstream_disconnects_total{upstream="sim"} 1
`
			if err := testutil.GatherAndCompare(r.reg, strings.NewReader(want), "qxtd_upstream_disconnects_total"); err != nil {
				t.Error(err)
			}
			fams, err := r.reg.Gather()
			if err != nil {
				t.Fatal(err)
			}
			kinds := map[string]float64{}
			for _, f := range fams {
				if f.GetName() != "qxtd_upstream_submit_errors_total" {
					continue
				}
				for _, m := range f.GetMetric() {
					for _, l := range m.GetLabel() {
						if l.GetName() == "kind" {
							kinds[l.GetValue()] = m.GetCounter().GetValue()
						}
					}
				}
			}
			if kinds["bind_lost"] != float64(refused) || kinds["rejected"] != 0 || kinds["connection"] != 0 {
				t.Errorf("submit errors %v: want bind_lost %d (the refusals), no rejected, no connection", kinds, refused)
			}
		})
	}
}
