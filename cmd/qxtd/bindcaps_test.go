package main

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/fiorix/go-smpp/smpp/pdu"

	"github.com/qxtd/qxtd/smpp"
)

// TestConfigBindCaps: smpp.max_binds_per_account and the per-enterprise
// share reach the daemon's SMPP ingress, the share left at 0 being a
// quarter of smpp.max_conns, and a bind refused by either is logged with
// its reason and counted.
func TestConfigBindCaps(t *testing.T) {
	_, simAddr := startSim(t, smpp.SimOptions{})
	more := `  - system_id: esme2
    password: secret2
    enterprise: T1
  - system_id: esme3
    password: secret3
    enterprise: T1
`
	// max_conns 8: enterprise T1 may hold 2 binds.
	d := startDaemon(t, writeConfig(t, t.TempDir(), simAddr, more),
		"QXTD_SMPP_MAX_CONNS=8", "QXTD_SMPP_MAX_BINDS_PER_ACCOUNT=1")
	bind := func(systemID, password string) error {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		c, err := smpp.Dial(ctx, smpp.ClientOptions{Addr: d.smppAddr, SystemID: systemID, Password: password,
			Kind: smpp.BindTransceiver, Conn: smpp.ConnOptions{RespTimeout: 5 * time.Second}})
		if err == nil {
			t.Cleanup(func() { _ = c.Close() })
		}
		return err
	}
	logged := 0 // "bind refused" lines seen
	refused := func(systemID, password, reason string) {
		t.Helper()
		err := bind(systemID, password)
		if st := pdu.Status(0); !errors.As(err, &st) || st != smpp.StatusBindFailed {
			t.Fatalf("bind %s: %v, want ESME_RBINDFAIL", systemID, err)
		}
		e, _ := d.waitLog(t, "bind refused", logged, 10*time.Second)["err"].(string)
		logged++
		if !strings.Contains(e, reason) {
			t.Errorf("bind %s refused with err %q, want it to name %q", systemID, e, reason)
		}
	}
	if err := bind("esme", "secret1"); err != nil {
		t.Fatal(err)
	}
	refused("esme", "secret1", "account esme has 1 binds up")
	if err := bind("esme2", "secret2"); err != nil {
		t.Fatal(err)
	}
	refused("esme3", "secret3", "enterprise T1 has 2 binds up")
	if got := metric(t, d.httpAddr, `qxtd_esme_binds_total{kind="transceiver",outcome="over_cap"}`); got != 2 {
		t.Errorf("over_cap binds counted %v, want 2", got)
	}
}
