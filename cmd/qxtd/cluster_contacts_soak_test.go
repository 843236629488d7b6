//go:build soak

package main

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"math/rand/v2"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/qxtd/qxtd/api"
)

// clContacts is TestSoakClusterDiskErrors' settings-change driver: it adds
// contacts to web's personal address book (POST /v1/contacts, a shared
// setting: written to etcd first, then by each node to its copy of the
// shared data through its store) on random nodes, each with a name and a
// number of its own, and records each answer:
//
//   - 201: acknowledged, it must be listed on every node at the end;
//   - 503 store_error saying "in effect": written, though the disk did
//     not confirm it; it may be listed;
//   - another 503, a connection error (a node killed under it) or no
//     answer in time: not written, or not known; it may be listed;
//   - anything else (a 500 above all) is a problem of the soak.
type clContacts struct {
	x   *clusterChaos
	key string

	mu       sync.Mutex
	sent     map[string]string // name → the number sent (11 digits), every contact sent
	acked    map[string]bool   // answered 201
	inEffect map[string]bool   // 503 store_error, "in effect"
	refused  map[string]bool   // 503 store_error, not in effect: nothing written
	other503 map[string]int    // other 503s by reason
	lost     map[string]bool   // a connection error or a timeout: not known
	slow     int               // answered after more than a second (a node's apply waited on its disk)
	slowest  time.Duration
	applies  int // the daemons' logged refusals of an apply to the local file (from the logs of the processes done)
}

func newClContacts(x *clusterChaos, key string) *clContacts {
	return &clContacts{x: x, key: key, sent: map[string]string{}, acked: map[string]bool{}, inEffect: map[string]bool{},
		refused: map[string]bool{}, other503: map[string]int{}, lost: map[string]bool{}}
}

// loop adds a contact about every 400 ms on a node drawn among those up
// (worker w), until ctx ends.
func (c *clContacts) loop(ctx context.Context, w int, rng *rand.Rand) {
	// Longer than the policy's wait for its shared write (30 s): a node
	// whose disk refuses the apply makes the request wait, and the soak
	// wants the daemon's own answer.
	cl := &http.Client{Timeout: 40 * time.Second}
	tick := time.NewTicker(400 * time.Millisecond) // pacing
	defer tick.Stop()
	for i := 0; ; i++ {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		var n *clNode
		var addr string
		for _, j := range rng.Perm(len(c.x.nodes)) { // never all three down
			if a, ok := c.x.nodes[j].addrNow(); ok {
				n, addr = c.x.nodes[j], a
				break
			}
		}
		if n == nil {
			continue
		}
		name := fmt.Sprintf("scd-%d-%d", w, i)
		number := c.x.dest("1590")
		body, _ := json.Marshal(api.ContactIn{Name: name, Number: number})
		c.mu.Lock()
		c.sent[name] = number
		c.mu.Unlock()
		began := time.Now()
		code, resp, hdr, _ := httpTo(cl, addr, http.MethodPost, "/v1/contacts", c.key, "", "application/json", string(body))
		c.answered(n, name, number, code, resp, hdr, time.Since(began))
	}
}

// answered records the answer to the contact name sent to node n.
func (c *clContacts) answered(n *clNode, name, number string, code int, resp string, hdr http.Header, took time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if took > time.Second {
		c.slow++
	}
	c.slowest = max(c.slowest, took)
	switch code {
	case http.StatusCreated:
		var ct api.Contact
		if err := json.Unmarshal([]byte(resp), &ct); err != nil || ct.Name != name || digits(ct.Number) != number {
			c.x.problem("contact %s (%s) added on node %d: answered 201 %s", name, number, n.id, resp)
		}
		c.acked[name] = true
	case http.StatusServiceUnavailable:
		var e struct {
			Error struct{ Reason, Message string }
		}
		_ = json.Unmarshal([]byte(resp), &e)
		switch {
		case e.Error.Reason != "store_error":
			c.other503[e.Error.Reason]++
			c.lost[name] = true
		case hdr.Get("Retry-After") == "":
			c.x.problem("contact %s on node %d: 503 store_error without Retry-After: %s", name, n.id, resp)
			c.lost[name] = true
		case strings.Contains(e.Error.Message, "in effect"):
			c.inEffect[name] = true
		default:
			c.refused[name] = true
		}
	case 0:
		c.lost[name] = true // killed under it, or no answer in time
	default:
		// A 500 above all: a failing disk answers 503 store_error.
		c.x.problem("contact %s (%s) added on node %d: %d %s", name, number, n.id, code, resp)
		c.lost[name] = true
	}
}

// replicaRefusals is the line a node logs when its store refuses to
// apply a change of etcd's shared data (it watches again from there).
const replicaRefusals = "the local file refused the change"

// noteLog counts the refused applies in the log of a daemon that ended.
func (c *clContacts) noteLog(log string) {
	c.mu.Lock()
	c.applies += strings.Count(log, replicaRefusals)
	c.mu.Unlock()
}

// check waits for every node (all up, their disks sound) to list every
// acknowledged contact, and the same contacts as the others, and checks
// that none lists a contact never sent (or with another number than sent).
func (c *clContacts) check(t *testing.T) {
	const converge = 60 * time.Second
	c.mu.Lock()
	sent, acked := maps.Clone(c.sent), maps.Clone(c.acked)
	applies := c.applies
	for _, n := range c.x.nodes {
		applies += strings.Count(n.proc.log(), replicaRefusals)
	}
	t.Logf("contacts: %d sent, %d acknowledged (201), %d in effect (503), %d refused (503 store_error), other 503s %v, %d lost (a connection error or no answer); %d answered after over 1 s (slowest %v); the nodes' stores refused %d applies of etcd's changes",
		len(sent), len(acked), len(c.inEffect), len(c.refused), c.other503, len(c.lost), c.slow, c.slowest.Round(time.Millisecond), applies)
	c.mu.Unlock()

	// lists reads each node's book: name → number (digits); a node's
	// error instead if it did not answer.
	lists := func() ([]map[string]string, error) {
		var out []map[string]string
		for _, n := range c.x.nodes {
			var l api.ContactList
			if _, err := getJSON("http://"+n.proc.httpAddr, "/v1/contacts", c.key, &l); err != nil {
				return nil, fmt.Errorf("node %d: %w", n.id, err)
			}
			m := map[string]string{}
			for _, ct := range l.Contacts {
				m[ct.Name] = digits(ct.Number)
			}
			if l.Total != len(l.Contacts) || len(m) != len(l.Contacts) {
				return nil, fmt.Errorf("node %d: total %d, %d contacts listed, %d names", n.id, l.Total, len(l.Contacts), len(m))
			}
			out = append(out, m)
		}
		return out, nil
	}
	settled := func(ls []map[string]string) bool {
		for _, m := range ls {
			for name := range acked {
				if _, ok := m[name]; !ok {
					return false
				}
			}
			if !maps.Equal(m, ls[0]) {
				return false
			}
		}
		return true
	}
	began := time.Now()
	deadline := began.Add(converge)
	var ls []map[string]string
	var err error
	for {
		ls, err = lists()
		if err == nil && settled(ls) {
			break
		}
		if time.Now().After(deadline) {
			break
		}
		tm := time.NewTimer(200 * time.Millisecond) // polling other processes' stores
		<-tm.C
	}
	if err != nil {
		t.Fatalf("contacts after %v: %v", converge, err)
	}
	for i, m := range ls {
		id := c.x.nodes[i].id
		var missing, strays []string
		for name := range acked {
			if _, ok := m[name]; !ok {
				missing = append(missing, name)
			}
		}
		for name, number := range m {
			if want, ok := sent[name]; !ok || want != number {
				strays = append(strays, fmt.Sprintf("%s %s (sent: %q)", name, number, want))
			}
		}
		slices.Sort(missing)
		slices.Sort(strays)
		if len(missing) > 0 {
			t.Errorf("node %d does not list %d acknowledged contacts after %v, e.g. %v", id, len(missing), converge, missing[:min(10, len(missing))])
		}
		if len(strays) > 0 {
			t.Errorf("node %d lists %d contacts never sent so, e.g. %v", id, len(strays), strays[:min(10, len(strays))])
		}
		if i > 0 && !maps.Equal(m, ls[0]) {
			var only0, onlyI []string
			for name := range ls[0] {
				if m[name] != ls[0][name] {
					only0 = append(only0, name)
				}
			}
			for name := range m {
				if ls[0][name] != m[name] {
					onlyI = append(onlyI, name)
				}
			}
			slices.Sort(only0)
			slices.Sort(onlyI)
			t.Errorf("nodes %d and %d list different contacts after %v: %d on node %d only (or another number) e.g. %v, %d on node %d only e.g. %v",
				c.x.nodes[0].id, id, converge, len(only0), c.x.nodes[0].id, only0[:min(10, len(only0))], len(onlyI), id, onlyI[:min(10, len(onlyI))])
		}
	}
	notAcked := 0
	for name := range ls[0] {
		if !acked[name] {
			notAcked++
		}
	}
	t.Logf("contacts: %d listed on node %d (%d of them not acknowledged); settled %v after %v",
		len(ls[0]), c.x.nodes[0].id, notAcked, settled(ls), time.Since(began).Round(time.Millisecond))
}
