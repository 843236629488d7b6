package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/qxtd/qxtd/smpp"
)

// listAnswer is what the test reads of GET /v1/messages and /v1/inbox.
type listAnswer struct {
	Messages []struct {
		ID         string    `json:"id"`
		AcceptedAt time.Time `json:"accepted_at"`
	} `json:"messages"`
	Replies []struct {
		ID   string `json:"id"`
		Text string `json:"text"`
	} `json:"replies"`
	Next         string   `json:"next"`
	Partial      bool     `json:"partial"`
	MissingNodes []uint16 `json:"missing_nodes"`
}

// TestClusterLists: the outbox and the inbox of an enterprise are spread
// over the nodes' stores; GET /v1/messages and /v1/inbox on any node list
// every node's, newest first, each once over pages of a small limit; a
// node that is down is named; a malformed cursor is refused; the
// scheduled outbox narrowed by send time is narrowed on every node.
func TestClusterLists(t *testing.T) {
	t.Parallel()
	nodes, sim, _ := startCluster(t, 3, 2, smpp.SimOptions{}, func(t *testing.T, id int, endpoints []string, simAddr string, binds int) string {
		path := withServiceNumber(t, writeClusterConfig(t, id, endpoints, simAddr, binds))
		// Two account managers with portfolios: T1's (esme's) and T2's.
		return rewriteConfig(t, path, "admin_token: test-token }", "admin_token: test-token, account_managers: ["+
			"{name: 张经理, token: "+mgrT1Token+", enterprises: [T1]}, {name: 李经理, token: "+mgrT2Token+", enterprises: [T2]}] }")
	})
	base := func(n *clusterNode) string { return "http://" + n.proc.httpAddr }
	if code, body := postJSON(t, "PATCH", base(nodes[0])+"/admin/v1/users/esme", "test-token", `{"role":"admin"}`); code != http.StatusOK {
		t.Fatalf("make esme an admin (it reads every reply): %d %s", code, body)
	}
	login := func(n *clusterNode) string {
		t.Helper()
		code, body := postJSON(t, "POST", base(n)+"/v1/login", "", `{"system_id":"esme","password":"secret1"}`)
		var lr struct{ Token string }
		if err := json.Unmarshal([]byte(body), &lr); code != http.StatusOK || err != nil {
			t.Fatalf("login on node %d: %d %s", n.id, code, body)
		}
		return lr.Token
	}

	// Six messages, through node 1 and node 2 in turn: their times
	// interleave.
	tokens := []string{login(nodes[0]), login(nodes[1])}
	var sent []string
	for k := range 6 {
		code, body := postJSON(t, "POST", base(nodes[k%2])+"/v1/messages", tokens[k%2], fmt.Sprintf(`{"to":["1380000%04d"],"text":"列表"}`, k))
		var res struct{ Results []struct{ ID string } }
		if code != http.StatusOK || json.Unmarshal([]byte(body), &res) != nil || len(res.Results) != 1 {
			t.Fatalf("send %d through node %d: %d %s", k, k%2+1, code, body)
		}
		sent = append(sent, res.Results[0].ID)
	}
	slices.Reverse(sent) // newest first

	// Three replies, on the bind the simulator delivers them to.
	for k := range 3 {
		deadline := time.Now().Add(20 * time.Second)
		for {
			err := sim.InjectMO("1371234567"+strconv.Itoa(k), "106590112", "回复"+strconv.Itoa(k))
			if err == nil {
				break
			}
			if !errors.Is(err, smpp.ErrNoReceiver) || time.Now().After(deadline) {
				t.Fatalf("inject: %v", err)
			}
			time.Sleep(20 * time.Millisecond) // no event to wait on: the bind is in the simulator
		}
	}

	// pageAll pages path (cursor parameter param) on n with limit 2.
	pageAll := func(n *clusterNode, token, path, param string) (ids []string, pages []listAnswer) {
		t.Helper()
		cursor := ""
		for range 20 {
			u := base(n) + path + "?limit=2"
			if cursor != "" {
				u += "&" + param + "=" + url.QueryEscape(cursor)
			}
			code, body := postJSON(t, "GET", u, token, "")
			var a listAnswer
			if err := json.Unmarshal([]byte(body), &a); code != http.StatusOK || err != nil {
				t.Fatalf("GET %s on node %d: %d %s", u, n.id, code, body)
			}
			pages = append(pages, a)
			for _, m := range a.Messages {
				ids = append(ids, m.ID)
			}
			for _, r := range a.Replies {
				ids = append(ids, r.ID)
			}
			if a.Next == "" {
				return ids, pages
			}
			if !strings.HasPrefix(a.Next, "c1.") {
				t.Fatalf("next %q: not a cluster cursor", a.Next)
			}
			cursor = a.Next
		}
		t.Fatalf("GET %s on node %d: no end in 20 pages", path, n.id)
		return nil, nil
	}

	t.Run("every node lists every node's messages, newest first, once", func(t *testing.T) {
		for _, n := range nodes {
			token := login(n)
			ids, pages := pageAll(n, token, "/v1/messages", "after")
			if !slices.Equal(ids, sent) {
				t.Errorf("node %d lists %v in %d pages, want %v", n.id, ids, len(pages), sent)
			}
			for _, p := range pages {
				if p.Partial || len(p.Messages) > 2 {
					t.Errorf("node %d: a page %+v", n.id, p)
				}
			}
		}
	})

	t.Run("a number finds its messages on every node, and the operator's trace too", func(t *testing.T) {
		// Messages 0 and 2 went through node 1, message 1 through node 2:
		// "0000", "0001", "0002" end their numbers.
		n := nodes[2]
		code, body := postJSON(t, "GET", base(n)+"/v1/messages?number="+url.QueryEscape("+86 13800000001"), login(n), "")
		var a listAnswer
		if err := json.Unmarshal([]byte(body), &a); code != http.StatusOK || err != nil || len(a.Messages) != 1 || a.Messages[0].ID != sent[4] || a.Partial {
			t.Errorf("node 3's outbox to 13800000001: %d %s", code, body)
		}
		for _, num := range []string{"13800000000", "13800000001"} {
			code, body = postJSON(t, "GET", base(n)+"/admin/v1/messages?number="+num, "test-token", "")
			var tr struct {
				Messages []struct{ ID, Enterprise string }
				Partial  bool
			}
			if err := json.Unmarshal([]byte(body), &tr); code != http.StatusOK || err != nil || len(tr.Messages) != 1 || tr.Messages[0].Enterprise == "" || tr.Partial {
				t.Errorf("the trace of %s on node 3: %d %s", num, code, body)
			}
		}
	})

	t.Run("a manager's traces hold its enterprises' records, on every node", func(t *testing.T) {
		// 李经理's session, opened on node 1, is taken on node 2 (etcd
		// holds it) over T2 only, as the configuration has it.
		code, body := postJSON(t, "POST", base(nodes[0])+"/admin/v1/login", "", `{"token":"`+mgrT2Token+`"}`)
		var lr struct{ Token string }
		if err := json.Unmarshal([]byte(body), &lr); code != http.StatusOK || err != nil {
			t.Fatalf("李经理's login on node 1: %d %s", code, body)
		}
		for _, c := range []struct {
			who, token string
			want       int
		}{{"张经理", mgrT1Token, 1}, {"李经理's session", lr.Token, 0}} {
			for _, n := range nodes[1:] {
				code, body := postJSON(t, "GET", base(n)+"/admin/v1/messages?number=13800000000", c.token, "")
				var tr struct {
					Messages []struct{ Enterprise string }
					Partial  bool
				}
				if err := json.Unmarshal([]byte(body), &tr); code != http.StatusOK || err != nil || len(tr.Messages) != c.want || tr.Partial {
					t.Errorf("%s's trace of 13800000000 on node %d: %d %s, want %d message(s)", c.who, n.id, code, body, c.want)
				}
				code, body = postJSON(t, "GET", base(n)+"/admin/v1/inbox?number=13712345671", c.token, "")
				var rt struct{ Replies []struct{ Enterprise string } }
				if err := json.Unmarshal([]byte(body), &rt); code != http.StatusOK || err != nil || len(rt.Replies) != c.want {
					t.Errorf("%s's trace of 13712345671's replies on node %d: %d %s, want %d", c.who, n.id, code, body, c.want)
				}
			}
		}
		if code, body := postJSON(t, "GET", base(nodes[1])+"/admin/v1/enterprises/T1/messages", lr.Token, ""); code != http.StatusForbidden {
			t.Errorf("李经理's session reads T1's outbox on node 2: %d %s", code, body)
		}
	})

	t.Run("a manager's top senders are its enterprises', over every node", func(t *testing.T) {
		// T1 sent through node 1 and node 2 (esme is T1's): the cluster's
		// top senders add up both nodes' counts; 李经理 (T2) has none of
		// them, 张经理 (T1) and the admin token see T1's.
		for _, c := range []struct {
			who, token string
			want       []string
		}{{"张经理", mgrT1Token, []string{"T1"}}, {"李经理", mgrT2Token, nil}, {"the admin token", "test-token", []string{"T1"}}} {
			var st struct {
				Cluster struct {
					Members []struct {
						ID   uint16
						Load *struct {
							TopEnterprises []struct{ Enterprise string } `json:"top_enterprises"`
						}
					}
					Load *struct {
						Members        int
						TopEnterprises []struct {
							Enterprise string
							Accepted   uint64
						} `json:"top_enterprises"`
					}
				}
			}
			waitCond(t, 10*time.Second, c.who+"'s cluster load of every node", func() bool {
				code, body := postJSON(t, "GET", base(nodes[2])+"/admin/v1/status", c.token, "")
				if err := json.Unmarshal([]byte(body), &st); code != http.StatusOK || err != nil {
					t.Fatalf("%s's status on node 3: %d %s", c.who, code, body)
				}
				return st.Cluster.Load != nil && st.Cluster.Load.Members == 3
			})
			var got []string
			var accepted uint64
			for _, e := range st.Cluster.Load.TopEnterprises {
				got, accepted = append(got, e.Enterprise), accepted+e.Accepted
			}
			if !slices.Equal(got, c.want) || len(c.want) > 0 && (accepted < 1 || accepted > 6) {
				t.Errorf("%s's cluster top senders on node 3: %v (%d accepted), want %v (1 to 6: T1's sends through nodes 1 and 2 of the last minute)", c.who, got, accepted, c.want)
			}
			for _, m := range st.Cluster.Members {
				if m.Load == nil {
					continue // answered the cluster's load, then not this one's: not a portfolio matter
				}
				for _, e := range m.Load.TopEnterprises {
					if !slices.Contains(c.want, e.Enterprise) {
						t.Errorf("%s sees node %d's top sender %s", c.who, m.ID, e.Enterprise)
					}
				}
			}
		}
	})

	t.Run("every node lists the replies", func(t *testing.T) {
		for _, n := range nodes {
			token := login(n)
			ids, _ := pageAll(n, token, "/v1/inbox", "before")
			if len(ids) != 3 || len(slices.Compact(slices.Sorted(slices.Values(ids)))) != 3 {
				t.Errorf("node %d's inbox: %v, want 3 replies once each", n.id, ids)
			}
		}
		// The operator's trace of a handset's replies, from every node.
		for _, n := range nodes {
			code, body := postJSON(t, "GET", base(n)+"/admin/v1/inbox?number=13712345671", "test-token", "")
			var tr struct {
				Replies []struct{ Text, Enterprise string }
				Partial bool
			}
			if err := json.Unmarshal([]byte(body), &tr); code != http.StatusOK || err != nil || len(tr.Replies) != 1 ||
				tr.Replies[0].Text != "回复1" || tr.Replies[0].Enterprise == "" || tr.Partial {
				t.Errorf("node %d's trace of 13712345671's replies: %d %s", n.id, code, body)
			}
		}
	})

	t.Run("a node exports every node's messages and replies, one file each", func(t *testing.T) {
		n := nodes[2] // it accepted none of them
		token := login(n)
		code, body := postJSON(t, "GET", base(n)+"/v1/messages/export?format=jsonl", token, "")
		var ids []string
		for line := range strings.SplitSeq(strings.TrimSpace(body), "\n") {
			var m struct{ ID string }
			if err := json.Unmarshal([]byte(line), &m); err != nil {
				t.Fatalf("export line %q: %v", line, err)
			}
			ids = append(ids, m.ID)
		}
		if code != http.StatusOK || !slices.Equal(ids, sent) {
			t.Errorf("node 3 exports %v (%d), want %v", ids, code, sent)
		}
		code, body = postJSON(t, "GET", base(n)+"/v1/inbox/export?lang=zh", token, "")
		if lines := strings.Count(body, "\n"); code != http.StatusOK || lines != 4 || !strings.Contains(body, "回复2") {
			t.Errorf("node 3's inbox export: %d, %d lines\n%s", code, lines, body)
		}
	})

	t.Run("a malformed or numeric cursor is refused", func(t *testing.T) {
		token := login(nodes[2])
		for _, q := range []string{"after=c1.1-x.1-x", "after=" + sent[0], "after=" + strings.Repeat("c1.1-0", 2000)} {
			code, body := postJSON(t, "GET", base(nodes[2])+"/v1/messages?"+q, token, "")
			if code != http.StatusBadRequest || !strings.Contains(body, `"invalid"`) || !strings.Contains(body, "after:") {
				t.Errorf("GET /v1/messages?%.40s: %d %s", q, code, body)
			}
		}
		if code, body := postJSON(t, "GET", base(nodes[2])+"/v1/inbox?before=c1.2", token, ""); code != http.StatusBadRequest || !strings.Contains(body, "before:") {
			t.Errorf("GET /v1/inbox?before=c1.2: %d %s", code, body)
		}
	})

	t.Run("send_from and send_to narrow every node's scheduled outbox by send time", func(t *testing.T) {
		// Six scheduled messages through node 1 and node 2 in turn, on
		// three days in turn: each node holds one of the middle day's.
		day := time.Now().Truncate(time.Hour).Add(24 * time.Hour)
		var middle []string
		for k := range 6 {
			at := day.Add(time.Duration(k%3)*24*time.Hour + time.Duration(k)*time.Minute).Format(time.RFC3339)
			code, body := postJSON(t, "POST", base(nodes[k%2])+"/v1/messages", tokens[k%2],
				fmt.Sprintf(`{"to":["1390000%04d"],"text":"定时","send_at":%q}`, k, at))
			var res struct{ Results []struct{ ID string } }
			if code != http.StatusOK || json.Unmarshal([]byte(body), &res) != nil || len(res.Results) != 1 {
				t.Fatalf("schedule %d through node %d: %d %s", k, k%2+1, code, body)
			}
			if k%3 == 1 {
				middle = append(middle, res.Results[0].ID)
			}
		}
		token := login(nodes[2])
		q := url.Values{"send_from": {day.Add(24 * time.Hour).Format(time.RFC3339)}, "send_to": {day.Add(48 * time.Hour).Format(time.RFC3339)}}
		code, body := postJSON(t, "GET", base(nodes[2])+"/v1/scheduled?"+q.Encode(), token, "")
		var a listAnswer
		if err := json.Unmarshal([]byte(body), &a); code != http.StatusOK || err != nil {
			t.Fatalf("GET /v1/scheduled?%s on node 3: %d %s", q.Encode(), code, body)
		}
		var ids []string
		for _, m := range a.Messages {
			ids = append(ids, m.ID)
		}
		if slices.Sort(ids); !slices.Equal(ids, slices.Sorted(slices.Values(middle))) || a.Partial {
			t.Errorf("node 3 lists %v (partial %v), want the middle day's %v", ids, a.Partial, middle)
		}
		q.Set("send_to", day.Format(time.RFC3339))
		if code, body := postJSON(t, "GET", base(nodes[2])+"/v1/scheduled?"+q.Encode(), token, ""); code != http.StatusBadRequest || !strings.Contains(body, "send_to is before send_from") {
			t.Errorf("an end before the start: %d %s", code, body)
		}
	})

	t.Run("with node 2 down the list is partial and names it", func(t *testing.T) {
		victim := nodes[1]
		if err := victim.proc.cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		<-victim.proc.exited
		token := login(nodes[0])
		ids, pages := pageAll(nodes[0], token, "/v1/messages", "after")
		var want []string // node 1's: the 1st, 3rd, 5th sent
		for i, id := range sent {
			if i%2 == 1 {
				want = append(want, id)
			}
		}
		if !slices.Equal(ids, want) {
			t.Errorf("node 1 lists %v, want node 1's %v", ids, want)
		}
		for _, p := range pages {
			if !p.Partial || !slices.Equal(p.MissingNodes, []uint16{2}) {
				t.Errorf("a page without node 2: %+v, want partial, missing [2]", p)
			}
		}
		// An export is whole or refused: not a file without node 2's.
		if code, body := postJSON(t, "GET", base(nodes[0])+"/v1/messages/export", token, ""); code != http.StatusServiceUnavailable || !strings.Contains(body, `"unavailable"`) {
			t.Errorf("an export with node 2 down: %d %s, want 503", code, body)
		}
	})
}

// withServiceNumber gives enterprise T1 of the configuration at path a
// service number with 2-digit extensions, so that it receives replies.
func withServiceNumber(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	cfg := strings.Replace(string(b), "no_whitelist: true, tps: 100000 }", `no_whitelist: true, tps: 100000, service_number: "1065901", ext_len: 2 }`, 1)
	if cfg == string(b) {
		t.Fatal("no enterprise T1 in the configuration")
	}
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// The account managers' tokens of TestClusterLists.
const mgrT1Token, mgrT2Token = "zhang-token-0123456789", "li-token-0123456789ab"

// rewriteConfig replaces old with new in the configuration file at path
// (once; the test fails if old is not there) and returns path.
func rewriteConfig(t *testing.T, path, old, new string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	cfg := strings.Replace(string(b), old, new, 1)
	if cfg == string(b) {
		t.Fatalf("%q is not in the configuration", old)
	}
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}
