package main

import (
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/qxtd/qxtd/smpp"
	"github.com/qxtd/qxtd/webhook"
)

// TestClusterReplyWebhooks: in a cluster, the reply_url the operator sets
// on one node reaches every node (the shared policy), and the replies
// that arrive on whichever node holds the carrier's receiving bind are
// POSTed from there, each once and signed with the secret set on another
// node; any node's GET /v1/receipt-webhook shows the replies' status
// summed over the nodes, and its inbox lists them all.
func TestClusterReplyWebhooks(t *testing.T) {
	t.Parallel()
	nodes, sim, _ := startCluster(t, 3, 2, smpp.SimOptions{}, func(t *testing.T, id int, endpoints []string, simAddr string, binds int) string {
		return withServiceNumber(t, writeHooksClusterConfig(t, id, endpoints, simAddr, binds))
	})
	rcv, posts := hookReceiver(t)
	base := func(n *clusterNode) string { return "http://" + n.proc.httpAddr }
	if code, body := postJSON(t, "PATCH", base(nodes[2])+"/admin/v1/enterprises/T1", "test-token",
		`{"reply_url":"`+rcv.URL+`/mo","reply_batch":1}`); code != http.StatusOK {
		t.Fatalf("set reply_url on node 3: %d %s", code, body)
	}
	if code, body := postJSON(t, "PATCH", base(nodes[0])+"/admin/v1/users/esme", "test-token", `{"role":"admin"}`); code != http.StatusOK {
		t.Fatalf("make esme an admin (it reads every reply): %d %s", code, body)
	}
	secret, token := hookSecretAndLogin(t, base(nodes[1]))
	// The policy is shared through etcd: wait until every node has it.
	for _, n := range nodes {
		waitCond(t, 15*time.Second, "node "+strconv.Itoa(n.id)+" knows the reply_url", func() bool {
			_, body := postJSON(t, "GET", base(n)+"/v1/receipt-webhook", token, "")
			return strings.Contains(body, `"reply_url":"`+rcv.URL+`/mo"`) && strings.Contains(body, `"signed":true`)
		})
	}

	const replies = 3
	for k := range replies {
		deadline := time.Now().Add(20 * time.Second)
		for {
			err := sim.InjectMO("1371234567"+strconv.Itoa(k), "106590112", "回复"+strconv.Itoa(k))
			if err == nil {
				break
			}
			if !errors.Is(err, smpp.ErrNoReceiver) || time.Now().After(deadline) {
				t.Fatalf("inject reply %d: %v", k, err)
			}
			time.Sleep(20 * time.Millisecond) // no event to wait on: the bind is in the simulator
		}
	}
	got := map[string]int{} // text → POSTs
	ids := map[string]bool{}
	for len(got) < replies {
		p := nextHookPost(t, posts)
		if !webhook.Verify(secret, p.ts, p.body, p.sig) {
			t.Fatalf("signature %q over %s does not verify with the secret set on node 2", p.sig, p.body)
		}
		var rp webhook.Reply
		if err := json.Unmarshal(p.body, &rp); err != nil || rp.ID == "" || rp.Extension != "12" {
			t.Fatalf("reply %s (%v)", p.body, err)
		}
		got[rp.Text]++
		ids[rp.ID] = true
	}
	if len(ids) != replies {
		t.Fatalf("replies %v under ids %v: want %d ids", got, ids, replies)
	}

	// Any node: the status summed over the nodes, every node answering,
	// and the inbox of every node's replies.
	var st struct {
		ReplyStatus struct {
			Pending int `json:"pending"`
			Last    *struct {
				Delivered bool   `json:"delivered"`
				Node      uint16 `json:"node"`
			} `json:"last"`
			Partial bool `json:"partial"`
		} `json:"reply_status"`
	}
	waitCond(t, 15*time.Second, "node 3's reply status shows the deliveries", func() bool {
		_, body := postJSON(t, "GET", base(nodes[2])+"/v1/receipt-webhook", token, "")
		return json.Unmarshal([]byte(body), &st) == nil && st.ReplyStatus.Pending == 0 && st.ReplyStatus.Last != nil &&
			st.ReplyStatus.Last.Delivered && st.ReplyStatus.Last.Node != 0 && !st.ReplyStatus.Partial
	})
	_, body := postJSON(t, "GET", base(nodes[2])+"/v1/inbox", token, "")
	var inbox listAnswer
	if err := json.Unmarshal([]byte(body), &inbox); err != nil || len(inbox.Replies) != replies || inbox.Partial {
		t.Fatalf("node 3's inbox: %v %s", err, body)
	}
	select {
	case p := <-posts:
		t.Fatalf("a POST more than the replies: %s", p.body)
	default:
	}
}
