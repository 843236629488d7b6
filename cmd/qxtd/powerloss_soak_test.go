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
	runChaosSoak(t, seed, lossyDisk(t, false))
}

// TestSoakPowerLossTwoWay is TestSoakChaosTwoWay on the same disk: long
// replies' parts, opt-outs, reply webhooks and scheduled messages cancelled
// and replaced over the cuts, which follow a SIGTERM as well as a kill -9
// (a clean stop synced everything: such a cut may lose nothing).
// SOAK_POWERLOSS_TWOWAY_SEED replays a seed.
func TestSoakPowerLossTwoWay(t *testing.T) {
	seed := soakSeed(t, "SOAK_POWERLOSS_TWOWAY_SEED")
	runTwoWaySoak(t, seed, lossyDisk(t, false))
}

// TestSoakClusterPowerLoss is TestSoakClusterChaos with each node's store
// on a disk of its own that loses its power at each of that node's kills:
// the checks are the cluster soak's (nothing any node acknowledged lost,
// receipts and replies relayed across nodes, keyed sends answered once,
// the batch job resumed, the carrier's bind cap held). etcd keeps its own
// disk: what the cluster shares there is etcd's durability, not qxtd's.
// SOAK_CLUSTER_POWERLOSS_SEED replays a seed.
func TestSoakClusterPowerLoss(t *testing.T) {
	runClusterChaos(t, soakSeed(t, "SOAK_CLUSTER_POWERLOSS_SEED"), clusterChaosOpts{lossy: true})
}

// TestSoakClusterDiskErrors is TestSoakClusterPowerLoss on disks that also
// fail, as TestSoakDiskErrors' does: in each gap between kills one node,
// drawn, may have its fsyncs fail with EIO for 0.5–2.5 s (losing the
// blocks they were to write), and one node's fail for a second in the
// last stretch. Besides the cluster soak's traffic and checks, contacts
// are added over HTTP on random nodes throughout (POST /v1/contacts): a
// settings change goes to etcd first, and each node applies it to its
// copy of the shared data through its store, which refuses writes while
// a failed sync is unresolved. At the end every node lists every contact
// answered 201, lists nothing never sent, and the three list the same
// (a change answered 503 store_error, "in effect" or not, or lost with a
// killed node, may be there or not, but alike everywhere); no answer is
// a 500. SOAK_CLUSTER_DISKERRORS_SEED replays a seed.
func TestSoakClusterDiskErrors(t *testing.T) {
	runClusterChaos(t, soakSeed(t, "SOAK_CLUSTER_DISKERRORS_SEED"), clusterChaosOpts{lossy: true, failing: true})
}

// TestSoakDiskErrors is TestSoakPowerLoss on a disk that also fails: in
// two of three gaps between kills, for 0.5–2.5 s, every fsync fails with
// EIO and loses the blocks it was to write, as Linux's writeback does (the
// pages are marked clean: a later fsync succeeds without them). What qxtd
// acknowledged must still be there after the power cuts, each part sent
// and billed once as in the chaos soak: a commit whose sync failed must
// not be answered as committed, and what such a commit left visible must
// not bend the store's counts or usage. SOAK_DISKERRORS_SEED replays a
// seed.
func TestSoakDiskErrors(t *testing.T) {
	seed := soakSeed(t, "SOAK_DISKERRORS_SEED")
	runChaosSoak(t, seed, lossyDisk(t, true))
}

// TestSoakDiskErrorsTwoWay is TestSoakPowerLossTwoWay on TestSoakDiskErrors'
// failing disk: replies, opt-outs, reply webhooks, scheduled messages
// cancelled and replaced, and batch jobs, over fsyncs failing between
// the restarts (a SIGTERM among them). SOAK_DISKERRORS_TWOWAY_SEED
// replays a seed.
func TestSoakDiskErrorsTwoWay(t *testing.T) {
	seed := soakSeed(t, "SOAK_DISKERRORS_TWOWAY_SEED")
	runTwoWaySoak(t, seed, lossyDisk(t, true))
}

// lossyDisk mounts an empty lossyFS for a soak's store, in a directory the
// daemon makes (as a first start on a new server does), and cuts its power
// at each of the soak's kills; failing: the soak may also make its fsyncs
// fail (chaosDisk.fail).
func lossyDisk(t *testing.T, failing bool) *chaosDisk {
	t.Helper()
	mnt := filepath.Join(t.TempDir(), "disk")
	if err := os.Mkdir(mnt, 0o700); err != nil {
		t.Fatal(err)
	}
	l, srv := mountLossy(t, mnt, nil)
	t.Cleanup(func() { unmountLossy(t, mnt, srv) })
	failedBefore := 0 // the fsyncs that failed on the disks mounted before l
	d := &chaosDisk{dir: filepath.Join(mnt, "data"), cut: func(rng *rand.Rand) string {
		img, line := l.cutPower(rng)
		failedBefore += l.failedSyncs()
		unmountLossy(t, mnt, srv)
		l, srv = mountLossy(t, mnt, img)
		return line
	}}
	if failing {
		d.fail = func(on bool) { l.fail(on) } // l: the disk mounted now
		d.failedSyncs = func() int { return failedBefore + l.failedSyncs() }
	}
	return d
}
