package api

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/qxtd/qxtd/gateway"
	"github.com/qxtd/qxtd/policy"
	"github.com/qxtd/qxtd/queue"
	"github.com/qxtd/qxtd/reminder"
	"github.com/qxtd/qxtd/segment"
	"github.com/qxtd/qxtd/smpp"
	"github.com/qxtd/qxtd/webhook"
)

// userRig is the whole daemon in-process: the SMSC simulator on loopback,
// the store, the policy on the store's file, the gateway with its upstream
// binds, and the API on an httptest server.
type userRig struct {
	t     *testing.T
	sim   *smpp.Simulator
	store *queue.Store
	pol   *policy.Policy
	gw    *gateway.Gateway
	srv   *Server
	rem   *reminder.Service
	url   string
	// hooks is the webhook sender the store tells of the webhooks it
	// queues or makes due (hookSender sets it), as the daemon's does.
	hooks atomic.Pointer[webhook.Sender]

	keys map[string]string // system_id → API key
}

// Enterprise A: alice (user), al2 (user), amy (admin); B: bob; C: carl
// (1 submission per second); D: dave (3 segments a month).
const (
	uNumA1      = "13712345678"
	uNumA2      = "13923412345"
	uNumA3      = "13800138000"
	uNumPending = "13712345679" // added by the enterprise, not approved
)

func newUserRig(t *testing.T) *userRig {
	t.Helper()
	return newBulkRig(t, rigOptions{sim: smpp.SimOptions{DLRDelay: 10 * time.Millisecond, Record: true}})
}

// call sends a JSON request with a bearer token ("" = none) and decodes a
// 2xx answer into out (if not nil). It returns the status and the body.
func (r *userRig) call(method, path, token string, body, out any) (int, []byte) {
	r.t.Helper()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			r.t.Fatal(err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, r.url+path, rd)
	if err != nil {
		r.t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		r.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		r.t.Fatal(err)
	}
	if out != nil && resp.StatusCode/100 == 2 {
		if err := json.Unmarshal(b, out); err != nil {
			r.t.Fatalf("%s %s: decode %s: %v", method, path, b, err)
		}
	}
	return resp.StatusCode, b
}

// must is call that fails the test unless the status is want.
func (r *userRig) must(want int, method, path, token string, body, out any) []byte {
	r.t.Helper()
	code, b := r.call(method, path, token, body, out)
	if code != want {
		r.t.Fatalf("%s %s: %d %s, want %d", method, path, code, b, want)
	}
	return b
}

// wantError checks an error answer's status and reason; it returns the
// decoded error.
func (r *userRig) wantError(want int, reason, method, path, token string, body any) errorBody {
	r.t.Helper()
	code, b := r.call(method, path, token, body, nil)
	var e errorBody
	if err := json.Unmarshal(b, &e); err != nil {
		r.t.Fatalf("%s %s: %d, not a JSON error: %q", method, path, code, b)
	}
	if code != want || e.Error.Reason != reason {
		r.t.Fatalf("%s %s: %d %s, want %d %s", method, path, code, b, want, reason)
	}
	return e
}

func (r *userRig) send(token string, req SendRequest) SendResponse {
	r.t.Helper()
	var out SendResponse
	r.must(http.StatusOK, "POST", "/v1/messages", token, req, &out)
	if len(out.Results) != len(req.To) {
		r.t.Fatalf("%d results for %d recipients", len(out.Results), len(req.To))
	}
	return out
}

func (r *userRig) message(token, id string) Message {
	r.t.Helper()
	var m Message
	r.must(http.StatusOK, "GET", "/v1/messages/"+id, token, nil, &m)
	return m
}

// waitState polls a message's status until it is in state, or fails the
// test at the deadline.
func (r *userRig) waitState(token, id, state string, d time.Duration) Message {
	r.t.Helper()
	deadline := time.NewTimer(d)
	defer deadline.Stop()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		m := r.message(token, id)
		if m.State == state {
			return m
		}
		select {
		case <-tick.C:
		case <-deadline.C:
			r.t.Fatalf("message %s is %s after %v, want %s", id, m.State, d, state)
		}
	}
}

// received is what the simulator got for dest: the texts, each
// concatenated message joined from its parts (complete ones only).
func (r *userRig) received(dest string) []string {
	r.t.Helper()
	var out []string
	type frag struct {
		seq  uint8
		text string
	}
	groups := map[uint16][]frag{}
	for _, m := range r.sim.Received() {
		if m.Dest != dest {
			continue
		}
		text, udh, err := segment.DecodeIncoming(m.DataCoding, m.ESMClass, m.ShortMessage, nil, false)
		if err != nil {
			r.t.Fatalf("simulator message to %s: %v", dest, err)
		}
		if udh == nil || !udh.Concat {
			out = append(out, text)
			continue
		}
		g := append(groups[udh.Ref], frag{udh.Seq, text})
		groups[udh.Ref] = g
		if len(g) == int(udh.Total) {
			slices.SortFunc(g, func(a, b frag) int { return int(a.seq) - int(b.seq) })
			var sb strings.Builder
			for _, f := range g {
				sb.WriteString(f.text)
			}
			out = append(out, sb.String())
		}
	}
	return out
}

// waitReceived waits until the simulator got text for dest.
func (r *userRig) waitReceived(dest, text string, d time.Duration) {
	r.t.Helper()
	deadline := time.NewTimer(d)
	defer deadline.Stop()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for !slices.Contains(r.received(dest), text) {
		select {
		case <-tick.C:
		case <-deadline.C:
			r.t.Fatalf("the SMSC did not receive %q for %s in %v; it has %q", text, dest, d, r.received(dest))
		}
	}
}

// waitUsage waits until the enterprise's usage this month is as given (the
// counters follow a commit a moment after the message can be read).
func (r *userRig) waitUsage(ent string, reserved, charged int64) {
	r.t.Helper()
	deadline := time.NewTimer(10 * time.Second)
	defer deadline.Stop()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for {
		res, ch := r.store.Usage(ent, queue.BillingMonth(time.Now()))
		if res == reserved && ch == charged {
			return
		}
		select {
		case <-tick.C:
		case <-deadline.C:
			r.t.Fatalf("usage of %s: reserved %d charged %d, want %d %d", ent, res, ch, reserved, charged)
		}
	}
}

// uClock is a settable clock for the session table.
type uClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *uClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }

func (c *uClock) Add(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}
