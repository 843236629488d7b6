package console

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"

	"github.com/qxtd/qxtd/api"
)

// listNodes is api.PeerLists with fixed answers: this rig as node 1 of a
// cluster whose node 2 has nothing more and node 3 does not answer.
type listNodes struct{}

func (listNodes) Self() uint16 { return 1 }
func (listNodes) ListNodes(context.Context) ([]uint16, error) {
	return []uint16{2, 3}, nil
}
func (listNodes) PeerPage(_ context.Context, node uint16, _ api.NodeListQuery) (api.NodePage, error) {
	if node == 3 {
		return api.NodePage{}, errors.New("node 3: connection refused")
	}
	return api.NodePage{}, nil
}

// In a cluster, 发件箱, 定时发件箱 and 收件箱 list this node's messages
// and replies and say which node could not be asked; a node that answered
// is not named.
func TestListsPageCluster(t *testing.T) {
	r := newRig(t, func(c *api.Config) { c.PeerLists = listNodes{} })
	key := r.apiKey("alice")
	id := r.apiSend(key, api.SendRequest{To: []string{numA1}, Text: "集群发件箱"})[0]
	r.waitState(key, id, "delivered")
	amy := r.client()
	amy.login("amy")
	for path, want := range map[string]string{
		"/outbox":    "集群发件箱",
		"/scheduled": "可以查询的节点上没有等待发送的定时短信",
		"/inbox":     "可以查询的节点上没有回复",
	} {
		a := amy.get(path)
		a.wantPage(t, want, `id="list-partial">部分节点暂时无法查询（节点 3）`)
		if strings.Contains(a.Body, "节点 2") {
			t.Errorf("%s names node 2, which answered", path)
		}
	}

	b := newBrowser(t)
	b.login(r.url, "amy")
	b.run("open the outbox", chromedp.Navigate(r.url+"/outbox"))
	b.waitText("#list-partial", "部分节点暂时无法查询", false)
	b.shot("outbox-partial")
	b.run("open the inbox", chromedp.Navigate(r.url+"/inbox"))
	b.waitText("#list-partial", "部分节点暂时无法查询", false)
	b.waitText("main", "可以查询的节点上没有回复", false)
	b.shot("inbox-partial")
}
