package gateway_test

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/qxtd/qxtd/policy"
)

// TestInteropKannelLongReplies: Kannel 1.4.5, bound as an ESME whose
// user takes long replies in parts (long_replies udh16, then sar), joins
// them as it joins a carrier SMSC's: its sms-service gets each long reply
// whole, once, a GSM one and a UCS-2 one, and the short one as it was.
func TestInteropKannelLongReplies(t *testing.T) {
	for _, mode := range []string{"udh16", "sar"} {
		t.Run(mode, func(t *testing.T) {
			r, pol := twoWayRig(t, rigOpts{})
			if _, err := pol.UpdateUser(policy.OperatorActor("test"), "alice", policy.UserUpdate{LongReplies: &mode}); err != nil {
				t.Fatal(err)
			}
			mos := make(chan url.Values, 16)
			web := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
				mos <- req.URL.Query()
				w.Header().Set("Content-Type", "text/plain; charset=utf-8")
			}))
			defer web.Close()
			k := startKannel(t, r.addr, "alice", "secret1", web.URL+"/mo", true)
			replies := map[string]bool{
				strings.Repeat("A long reply in GSM, {split} by qxtd. ", 6) + "End": true, // 243 septets: two parts
				strings.Repeat("长回复分段测试", 15):                                       true, // 105 UCS-2 units: two parts
				"短的": true,
			}
			for text := range replies {
				if err := r.sim.InjectMO("13712345678", "10657500112", text); err != nil {
					t.Fatal(err)
				}
			}
			deadline := time.After(30 * time.Second)
			for range len(replies) {
				select {
				case q := <-mos:
					if !replies[q.Get("text")] {
						t.Errorf("Kannel got %q, not one of the replies whole", q.Get("text"))
					}
					delete(replies, q.Get("text"))
				case <-deadline:
					t.Fatalf("after 30 s Kannel still lacks %v; its logs: %q", replies, k.problems())
				}
			}
			waitFor(t, 10*time.Second, "3 replies acknowledged", func() bool { return counters(t, r)["qxtd_mo_forwarded_total,outcome=ok"] == 3 })
		})
	}
}
