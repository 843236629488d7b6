package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/qxtd/qxtd/queue"
)

// `qxtd disk-check [DIR]`: what the disk that will hold store.path lets
// the store do, measured with the store itself on a file of its own in
// DIR (removed after). Every answer qxtd gives waits for a commit, two
// fdatasyncs, so the disk's sync latency is the floor of every answer and
// sets the pace of a client that waits for each answer; cloud volumes
// differ from local SSDs by ten times and more there. An operator runs it
// before installing and when StoreCommitsSlow fires.

// diskCheckWriters is the concurrent writers of the second phase: as
// many store operations in flight as a loaded gateway has (ESMEs'
// windows, upstream workers, receipts), so that they share commits.
const diskCheckWriters = 64

// diskCheckSlow is the commit p99 above which the disk is called slow: an
// ESME with a window of 1 then gets fewer than 100 answers a second.
const diskCheckSlow = 10 * time.Millisecond

// The check must not fill the disk it measures (a running daemon's,
// perhaps): it refuses to start with less than diskCheckMinFree free, and
// stops after diskCheckMaxOps store operations, half of them in each
// phase at most, whatever --duration says (a fast disk and CPU do that
// many in seconds). An operation adds about 270 bytes to the file (205
// MiB after 810,000 here), so the file stays under about 130 MiB.
const (
	diskCheckMinFree = 1 << 30
	diskCheckMaxOps  = 500_000
)

// diskCheck is the measurement, printed as text or (--json, for a
// pre-flight script) as it is.
type diskCheck struct {
	Dir string `json:"dir"`
	// One writer, each operation its own commit: how long a commit takes.
	Commits       int     `json:"commits"`
	P50MS         float64 `json:"commit_p50_ms"`
	P99MS         float64 `json:"commit_p99_ms"`
	MaxMS         float64 `json:"commit_max_ms"`
	SerialSeconds float64 `json:"serial_seconds"`
	// Writers at once: the operations they did, in how many commits.
	Writers           int     `json:"writers"`
	Ops               int64   `json:"operations"`
	OpsCommits        uint64  `json:"shared_commits"`
	ConcurrentSeconds float64 `json:"concurrent_seconds"`
	OpsPerSecond      float64 `json:"operations_per_second"`
	WrittenBytesPerOp float64 `json:"written_bytes_per_operation"`
	// Capped: a phase stopped before its time, at MaxOps/2 operations.
	Capped bool  `json:"stopped_at_operation_limit"`
	MaxOps int64 `json:"operation_limit"`
	Slow   bool  `json:"slow"` // commits over diskCheckSlow at p99
}

func diskCheckCmd() *cobra.Command {
	var (
		dur    time.Duration
		asJSON bool
	)
	c := &cobra.Command{
		Use:   "disk-check [DIR]",
		Short: "Measure what the disk under DIR (default .) lets the store do",
		Long: `Measure what the disk that will hold store.path lets qxtd's store do: a store
file of its own is made in DIR (default: the current directory) and removed after.
First one writer, each operation its own commit (two fdatasyncs): the time every
answer waits at least. Then 64 writers at once, sharing commits as a loaded gateway
does: the store operations a second this disk and CPU allow (a message takes about
three, four with a receipt to forward). Run it on the file system that will hold
store.path, with no daemon using the disk, before installing and when the alert
StoreCommitsSlow fires.`,
		Args: nargs(0, 1),
		RunE: func(c *cobra.Command, args []string) error {
			dir := "."
			if len(args) == 1 {
				dir = args[0]
			}
			if dur < 200*time.Millisecond || dur > 10*time.Minute {
				return usagef("disk-check: --duration %v: want 200ms to 10m", dur)
			}
			// Interrupted, the check still removes its file.
			ctx, cancel := opsContext(c.Context())
			defer cancel()
			r, err := checkDisk(ctx, dir, dur, diskCheckMaxOps)
			if err != nil {
				return err
			}
			if asJSON {
				enc := json.NewEncoder(c.OutOrStdout())
				enc.SetIndent("", "  ")
				return enc.Encode(r)
			}
			printDiskCheck(c.OutOrStdout(), r)
			return nil
		},
	}
	c.Flags().DurationVar(&dur, "duration", 6*time.Second, "how long to measure, both phases together")
	c.Flags().BoolVar(&asJSON, "json", false, "print the measurement as JSON (for a pre-flight script)")
	return c
}

// checkDisk measures the store on a file in a directory of its own under
// dir for about dur, half one writer, half diskCheckWriters, each half
// stopping early at maxOps/2 operations.
func checkDisk(ctx context.Context, dir string, dur time.Duration, maxOps int64) (diskCheck, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return diskCheck{}, err
	}
	var fs syscall.Statfs_t
	if err := syscall.Statfs(abs, &fs); err != nil {
		return diskCheck{}, fmt.Errorf("disk-check: %s: %w", abs, err)
	}
	if free := fs.Bavail * uint64(fs.Bsize); free < diskCheckMinFree {
		return diskCheck{}, fmt.Errorf("disk-check: %s has %d MiB free; the check needs %d MiB", abs, free>>20, diskCheckMinFree>>20)
	}
	tmp, err := os.MkdirTemp(abs, ".qxtd-disk-check-")
	if err != nil {
		return diskCheck{}, fmt.Errorf("disk-check: %w", err)
	}
	defer os.RemoveAll(tmp)
	st, err := queue.Open(filepath.Join(tmp, "check.db"), queue.Options{})
	if err != nil {
		return diskCheck{}, fmt.Errorf("disk-check: %w", err)
	}
	defer st.Close()
	r := diskCheck{Dir: abs, Writers: diskCheckWriters, MaxOps: maxOps}
	enqueue := func(i int64) error {
		m := &queue.Message{Account: "check", Enterprise: "CHECK", Source: "10690000", Dest: "13800000000",
			Upstream: "check", Parts: []queue.Part{{Body: []byte("qxtd disk-check 短信")}}}
		if err := st.Enqueue(ctx, m); err != nil {
			return fmt.Errorf("disk-check: store operation %d: %w", i, err)
		}
		return nil
	}

	// One writer: each operation waits for its own commit.
	var lat []time.Duration
	began := time.Now()
	for i := int64(0); time.Since(began) < dur/2; i++ {
		if i == maxOps/2 {
			r.Capped = true
			break
		}
		t := time.Now()
		if err := enqueue(i); err != nil {
			return diskCheck{}, err
		}
		lat = append(lat, time.Since(t))
	}
	r.SerialSeconds = time.Since(began).Seconds()
	if len(lat) == 0 {
		return diskCheck{}, errors.New("disk-check: no operation allowed in the first phase")
	}
	slices.Sort(lat)
	r.Commits = len(lat)
	r.P50MS, r.P99MS, r.MaxMS = ms(lat[len(lat)/2]), ms(lat[min(len(lat)-1, len(lat)*99/100)]), ms(lat[len(lat)-1])
	r.judge()

	// Many writers: operations share commits.
	before := st.Stats()
	var (
		n     atomic.Int64
		wg    sync.WaitGroup
		first error
		once  sync.Once
	)
	began = time.Now()
	stop := began.Add(dur - dur/2)
	for range diskCheckWriters {
		wg.Go(func() {
			for time.Now().Before(stop) {
				i := n.Add(1)
				if i > maxOps/2 {
					return
				}
				if err := enqueue(i); err != nil {
					once.Do(func() { first = err })
					return
				}
			}
		})
	}
	wg.Wait()
	if first != nil {
		return diskCheck{}, first
	}
	if ctx.Err() != nil {
		return diskCheck{}, ctx.Err()
	}
	after := st.Stats()
	r.ConcurrentSeconds = time.Since(began).Seconds()
	r.Capped = r.Capped || n.Load() > maxOps/2
	r.Ops = int64(after.Ops - before.Ops)
	r.OpsCommits = after.Txns - before.Txns
	r.OpsPerSecond = float64(r.Ops) / r.ConcurrentSeconds
	if r.Ops > 0 {
		r.WrittenBytesPerOp = float64(after.Written-before.Written) / float64(r.Ops)
	}
	if r.Ops == 0 || r.OpsCommits == 0 {
		return diskCheck{}, errors.New("disk-check: no operation committed in the second phase: raise --duration")
	}
	return r, nil
}

// judge sets Slow from the commits' p99.
func (r *diskCheck) judge() { r.Slow = r.P99MS > ms(diskCheckSlow) }

func printDiskCheck(w io.Writer, r diskCheck) {
	fmt.Fprintf(w, "disk check of %s (a store file of its own, removed after)\n", r.Dir)
	fmt.Fprintf(w, "one writer:  %d commits in %.1f s, each %.2f ms at p50, %.2f ms at p99, %.2f ms at most\n",
		r.Commits, r.SerialSeconds, r.P50MS, r.P99MS, r.MaxMS)
	fmt.Fprintf(w, "%d writers: %d operations in %.1f s in %d commits (%.0f a commit): %.0f operations/s, %.1f KiB written an operation\n",
		r.Writers, r.Ops, r.ConcurrentSeconds, r.OpsCommits, float64(r.Ops)/float64(r.OpsCommits), r.OpsPerSecond, r.WrittenBytesPerOp/1024)
	if r.Capped {
		fmt.Fprintf(w, "(stopped before --duration, at %d operations a phase: the check does not fill the disk)\n", r.MaxOps/2)
	}
	fmt.Fprintf(w, "so: every answer (submit_sm_resp, an HTTP 2xx) waits for a commit, at least %.2f ms here; a client that waits for each\n", r.P50MS)
	fmt.Fprintf(w, "answer (a window of 1) gets at most about %.0f a second; a message takes about 3 store operations, so the store\n", 1000/r.P50MS)
	fmt.Fprintf(w, "alone allows about %.0f messages a second on this disk and CPU; qxtd's other work (SMPP, policy, receipts)\n", r.OpsPerSecond/3)
	fmt.Fprintln(w, "comes on top of it")
	if r.Slow {
		fmt.Fprintf(w, "SLOW: commits take over %.2f ms at p99: answers will be slow and small windows slower; look for other writers on this disk,\n", ms(diskCheckSlow))
		fmt.Fprintln(w, "a cloud volume's IOPS limit or burst credits, or put store.path on a local SSD")
	}
}

// ms is d in milliseconds, to the microsecond.
func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
