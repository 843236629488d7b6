//go:build soak

package main

import (
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
)

// TestSoakPowerLoss is TestSoakChaos with the daemon's store on a disk
// that loses power at every kill (lossyFS): what qxtd wrote and did not
// sync before the kill, and the names it did not make durable by a
// directory's fsync, are kept only in part, as a disk and its journal may
// have kept them. The checks are TestSoakChaos's: nothing acknowledged is
// lost (no message, no batch job, no receipt an ESME or a webhook was
// owed), duplicates stay within the windows a kill allows, usage equals
// what was delivered. The store directory is a new one below the mount
// point, as a first start on a new server makes it.
//
// SOAK_POWERLOSS_SEED replays a seed: it draws the traffic, the kills and
// what each cut keeps.
func TestSoakPowerLoss(t *testing.T) {
	seed := soakSeed(t, "SOAK_POWERLOSS_SEED")
	runChaosSoak(t, seed, lossyDisk(t))
}

// TestSoakPowerLossTwoWay is TestSoakChaosTwoWay on the same disk: long
// replies' parts, opt-outs, reply webhooks and scheduled messages cancelled
// and replaced over the cuts, which follow a SIGTERM as well as a kill -9
// (a clean stop synced everything: such a cut may lose nothing).
// SOAK_POWERLOSS_TWOWAY_SEED replays a seed.
func TestSoakPowerLossTwoWay(t *testing.T) {
	seed := soakSeed(t, "SOAK_POWERLOSS_TWOWAY_SEED")
	runTwoWaySoak(t, seed, lossyDisk(t))
}

// lossyDisk mounts an empty lossyFS for a soak's store, in a directory the
// daemon makes (as a first start on a new server does), and cuts its power
// at each of the soak's kills.
func lossyDisk(t *testing.T) *chaosDisk {
	t.Helper()
	mnt := filepath.Join(t.TempDir(), "disk")
	if err := os.Mkdir(mnt, 0o700); err != nil {
		t.Fatal(err)
	}
	l, srv := mountLossy(t, mnt, nil)
	t.Cleanup(func() { unmountLossy(t, mnt, srv) })
	return &chaosDisk{dir: filepath.Join(mnt, "data"), cut: func(rng *rand.Rand) string {
		img, line := l.cutPower(rng)
		unmountLossy(t, mnt, srv)
		l, srv = mountLossy(t, mnt, img)
		return line
	}}
}
