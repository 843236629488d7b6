package gateway_test

import (
	"context"
	"errors"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/fiorix/go-smpp/smpp/pdu"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/qxtd/qxtd/gateway"
	"github.com/qxtd/qxtd/smpp"
)

// TestMaxBindsPerAccountAndEnterprise: one account's binds beyond
// MaxBindsPerAccount, and the binds of one enterprise's accounts beyond
// MaxBindsPerEnterprise, are refused ESME_RBINDFAIL and counted over_cap,
// while another enterprise's account still binds; a bind that ends gives
// its slot back to its account and its enterprise. Without the caps one
// tenant's rebinds could hold every connection of the SMPP server.
func TestMaxBindsPerAccountAndEnterprise(t *testing.T) {
	acct := func(enterprise string) gateway.StaticAccount {
		return gateway.StaticAccount{Password: "pw", Account: gateway.Account{Enterprise: enterprise, Signature: "【测试】"}}
	}
	r := newRig(t, rigOpts{
		accounts: gateway.StaticAccounts{"a1": acct("A"), "a2": acct("A"), "a3": acct("A"), "b1": acct("B")},
		gwcfg:    func(c *gateway.Config) { c.MaxBindsPerAccount, c.MaxBindsPerEnterprise = 3, 5 },
	})
	hs := httptest.NewServer(promhttp.HandlerFor(r.reg, promhttp.HandlerOpts{}))
	defer hs.Close()
	const bound = `qxtd_esme_bound{kind="transceiver"}`

	bind := func(systemID string) *esme {
		t.Helper()
		e, err := r.bind(systemID, "pw", smpp.BindTransceiver)
		if err != nil {
			t.Fatalf("bind %s: %v", systemID, err)
		}
		return e
	}
	refused := func(systemID, why string) {
		t.Helper()
		_, err := r.bind(systemID, "pw", smpp.BindTransceiver)
		if st := pdu.Status(0); !errors.As(err, &st) || st != smpp.StatusBindFailed {
			t.Fatalf("bind %s (%s): %v, want ESME_RBINDFAIL", systemID, why, err)
		}
	}
	// unbind ends e's bind and waits for the gateway to close its session:
	// the server closes the connection once unbind_resp is written, so the
	// client's Unbind returns before the slot is given back.
	unbind := func(e *esme) {
		t.Helper()
		want := scrape(t, hs.URL)[bound] - 1
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := e.conn.Unbind(ctx); err != nil {
			t.Fatalf("unbind: %v", err)
		}
		waitFor(t, 10*time.Second, "the unbound session closed", func() bool { return scrape(t, hs.URL)[bound] == want })
	}

	// The account's cap, with room in its enterprise's share.
	a1 := []*esme{bind("a1"), bind("a1"), bind("a1")}
	refused("a1", "its 4th bind, over the account's 3")
	bind("b1")
	unbind(a1[0])
	bind("a1")

	// The enterprise's share: A has 3 binds (a1) + 2 (a2) = 5.
	a2 := []*esme{bind("a2"), bind("a2")}
	refused("a2", "its 3rd bind, over enterprise A's 5")
	refused("a3", "its 1st bind, over enterprise A's 5")
	bind("b1") // another enterprise still binds
	unbind(a2[0])
	bind("a3")
	refused("a3", "enterprise A at its 5 again")

	got := scrape(t, hs.URL)
	for series, want := range map[string]float64{
		`qxtd_esme_binds_total{kind="transceiver",outcome="ok"}`:       9,
		`qxtd_esme_binds_total{kind="transceiver",outcome="over_cap"}`: 4,
		`qxtd_esme_binds_total{kind="transceiver",outcome="refused"}`:  0,
		bound: 7, // a1 3, a2 1, a3 1, b1 2
	} {
		if got[series] != want {
			t.Errorf("%s = %v, want %v", series, got[series], want)
		}
	}
}
