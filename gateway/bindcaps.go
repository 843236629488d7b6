package gateway

import (
	"fmt"
	"sync"

	"github.com/qxtd/qxtd/smpp"
)

// bindOverCap is the outcome of qxtd_esme_binds_total for a bind with good
// credentials refused by Config.MaxBindsPerAccount or
// MaxBindsPerEnterprise: apart from "refused" (credentials, a disabled
// account), so that an alert on password guessing does not fire for a
// tenant that opens too many binds, and the reverse.
const bindOverCap = "over_cap"

// bindCaps counts the ESME binds up on this node per account and per
// enterprise. The SMPP server caps connections in all and unbound ones per
// address, but a bound connection is no stranger's: without these caps one
// tenant with valid credentials could hold every one of smpp.max_conns
// (rebinds are cheap, enquire_link keeps them up) and every other tenant's
// bind would be closed at accept.
//
// The counts are this node's only: in cluster mode each node has its own
// max_conns to protect, and the cluster's bind registry (cluster.ESMEBinds)
// is a hint of where receivers are, not a count to reserve against.
type bindCaps struct {
	mu         sync.Mutex
	account    map[string]int // system_id → binds up
	enterprise map[string]int // enterprise → binds up, all its accounts
}

// take reserves a bind for acct, or refuses it with ESME_RBINDFAIL if the
// account already has maxAccount binds or its enterprise maxEnterprise
// (either ≤ 0: no cap). A reservation is released by release.
//
// ESME_RBINDFAIL (0x0D), not ESME_RALYBND (0x05): 0x05 answers a bind on
// a connection that is bound already, and Kannel's smsc_smpp even takes it
// in a bind_resp for success, so it would go on as if bound. Kannel gives a
// connection up for good on ESME_RINVSYSID, ESME_RINVPASWD and
// ESME_RINVSYSTYP only and reconnects after its reconnect delay on any
// other status; a slot frees when one of the tenant's own binds ends, so
// "refused, try again later" is the meaning wanted.
func (b *bindCaps) take(acct *Account, maxAccount, maxEnterprise int) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if n := b.account[acct.SystemID]; maxAccount > 0 && n >= maxAccount {
		return fmt.Errorf("%w: account %s has %d binds up, the most one account may hold", smpp.StatusBindFailed, acct.SystemID, n)
	}
	if n := b.enterprise[acct.Enterprise]; maxEnterprise > 0 && n >= maxEnterprise {
		return fmt.Errorf("%w: enterprise %s has %d binds up, the most one enterprise may hold", smpp.StatusBindFailed, acct.Enterprise, n)
	}
	if b.account == nil {
		b.account, b.enterprise = make(map[string]int), make(map[string]int)
	}
	b.account[acct.SystemID]++
	b.enterprise[acct.Enterprise]++
	return nil
}

// release gives back a bind taken for acct (the same *Account: its
// SystemID and Enterprise as they were at the bind).
func (b *bindCaps) release(acct *Account) {
	b.mu.Lock()
	defer b.mu.Unlock()
	decr(b.account, acct.SystemID)
	decr(b.enterprise, acct.Enterprise)
}

// decr takes one from m[k] and drops the entry at zero, so that the maps
// hold only accounts and enterprises with binds up.
func decr(m map[string]int, k string) {
	if m[k]--; m[k] <= 0 {
		delete(m, k)
	}
}
