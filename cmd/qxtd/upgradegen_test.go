//go:build upgradegen

package main

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/qxtd/qxtd/smpp"
)

// TestMakeUpgradeStore writes testdata/upgrade/COMMIT-STOP.db.gz and
// .json (see upgrade_test.go): it builds qxtd at UPGRADEGEN_COMMIT from
// this repository's history (in a git worktree it removes; or runs
// UPGRADEGEN_BIN, built from that commit), has an ESME submit a mix of
// messages to it (upgradeMsg's kinds) and stops it with UPGRADEGEN_STOP
// (sigterm, the default, or kill9). UPGRADEGEN_OUT writes elsewhere than
// testdata/upgrade; UPGRADEGEN_CHECK=1 then starts this build on a copy
// (checkUpgrade), as TestUpgradeFromOlderStore does. (Not QXTD_: the
// daemon takes QXTD_ variables for configuration keys.) Not run by make test:
//
//	UPGRADEGEN_COMMIT=db3f5c0 go test -tags upgradegen -run TestMakeUpgradeStore -v ./cmd/qxtd/
func TestMakeUpgradeStore(t *testing.T) {
	commit := os.Getenv("UPGRADEGEN_COMMIT")
	if commit == "" {
		t.Fatal("UPGRADEGEN_COMMIT: the commit to build")
	}
	out, err := exec.Command("git", "rev-parse", "--short=7", commit+"^{commit}").Output()
	if err != nil {
		t.Fatalf("git rev-parse %s: %v", commit, err)
	}
	commit = strings.TrimSpace(string(out))
	stop := os.Getenv("UPGRADEGEN_STOP")
	if stop == "" {
		stop = "sigterm"
	}
	if stop != "sigterm" && stop != "kill9" {
		t.Fatalf("UPGRADEGEN_STOP %q: sigterm or kill9", stop)
	}
	outDir := os.Getenv("UPGRADEGEN_OUT")
	if outDir == "" {
		outDir = filepath.Join("testdata", "upgrade")
	}
	bin := os.Getenv("UPGRADEGEN_BIN")
	if bin == "" {
		bin = buildCommit(t, commit)
	}

	dir := t.TempDir()
	// Receipts only when injected: the messages sent stay waiting for theirs.
	sim, simAddr := startSim(t, smpp.SimOptions{DLRDelay: time.Hour})
	cfg := writeUpgradeConfig(t, dir, simAddr)
	d := startDaemonBin(t, bin, cfg)
	sink := newSink()
	c := dialESME(t, d.smppAddr, sink.handler())
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	st := upgradeStore{Commit: commit, Stop: stop, Written: time.Now().UTC().Truncate(time.Second)}
	add := func(m upgradeMsg, payload bool, schedule string) {
		t.Helper()
		id, err := submitUpg(ctx, c, m.Dest, m.Text, payload, schedule, nil, m.Priority)
		if err != nil {
			t.Fatalf("%s to %s: %v", m.Kind, m.Dest, err)
		}
		m.IDs = []string{id}
		st.Messages = append(st.Messages, m)
	}
	long := strings.Repeat("长短信的内容，", 30) + "完。"

	// Sent: two with their receipts back, two (one long) waiting for theirs.
	add(upgradeMsg{Kind: "done", Dest: "13900000001", Text: "done before the upgrade"}, false, "")
	add(upgradeMsg{Kind: "done", Dest: "13900000002", Text: "升级前已送达"}, false, "")
	add(upgradeMsg{Kind: "sent", Dest: "13900000011", Text: "sent, its receipt after the upgrade"}, false, "")
	add(upgradeMsg{Kind: "sent", Dest: "13900000012", Text: "已发送：" + long}, true, "")
	waitCond(t, 30*time.Second, "the sent messages at the SMSC", func() bool {
		for _, m := range st.Messages {
			if _, _, ok, _ := simText(sim, m.Dest); !ok {
				return false
			}
		}
		return true
	})
	var done []string
	for i := range st.Messages {
		m := &st.Messages[i]
		for _, r := range sim.Received() {
			if r.Dest != m.Dest {
				continue
			}
			if m.Kind == "done" {
				if err := sim.InjectReceipt(r.ID, r.Dest, r.Source); err != nil {
					t.Fatal(err)
				}
				done = append(done, m.IDs...)
				continue
			}
			m.SMSCIDs = append(m.SMSCIDs, r.ID)
			m.Source = r.Source
		}
	}
	sink.waitAll(t, done, 30*time.Second)

	// Waiting: the SMSC throttles everything from now on.
	sim.SetFaults(smpp.Faults{Throttle: 1})
	add(upgradeMsg{Kind: "queued", Dest: "13900000021", Text: "queued at the upgrade"}, false, "")
	add(upgradeMsg{Kind: "queued", Dest: "13900000022", Text: "升级时排队的短信"}, false, "")
	add(upgradeMsg{Kind: "queued", Dest: "13900000023", Text: "queued, in message payload"}, true, "")
	add(upgradeMsg{Kind: "queued", Dest: "13900000024", Text: "优先：queued with priority", Priority: 1}, false, "")
	add(upgradeMsg{Kind: "long", Dest: "13900000031", Text: "排队的" + long}, true, "")
	// Due in 5 s: while the older build is stopped, or then throttled.
	add(upgradeMsg{Kind: "scheduled", Dest: "13900000041", Text: "scheduled 5 s ahead", Due: time.Now().Add(5 * time.Second).UTC()}, false, "000000000005000R")
	add(upgradeMsg{Kind: "future", Dest: "13900000051", Text: "定时：二〇三五年"}, false, "350101000000000+")
	for i, prio := range []uint8{0, 1} {
		n := strconv.Itoa(i + 1)
		split := upgradeMsg{Kind: "split", Dest: "1390000006" + n, Ref: 0x5a + uint8(i), Before: 2, Priority: prio,
			Parts: []string{"第一段" + n + strings.Repeat("一", 30), "第二段" + strings.Repeat("二", 30), "第三段" + strings.Repeat("三", 30)}}
		split.Text = strings.Join(split.Parts, "")
		for seq := 1; seq <= split.Before; seq++ {
			id, err := submitUpg(ctx, c, split.Dest, split.Parts[seq-1], false, "", splitUDH(split.Ref, len(split.Parts), seq), prio)
			if err != nil {
				t.Fatalf("split part %d: %v", seq, err)
			}
			split.IDs = append(split.IDs, id)
		}
		st.Messages = append(st.Messages, split)
	}

	switch stop {
	case "sigterm":
		d.stop(t)
	case "kill9":
		if err := d.cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		<-d.exited
	}
	for _, m := range st.Messages {
		if m.Kind == "done" || m.Kind == "sent" {
			continue
		}
		if _, n, _, _ := simText(sim, m.Dest); n != 0 {
			t.Fatalf("the %s message to %s reached the throttling SMSC", m.Kind, m.Dest)
		}
	}
	for line := range strings.SplitSeq(d.log(), "\n") {
		if strings.Contains(line, `"level":"ERROR"`) || strings.Contains(line, `"level":"WARN"`) {
			t.Logf("%s logged: %s", commit, line)
		}
	}

	// The store, gzipped, and what it holds.
	db, err := os.ReadFile(filepath.Join(dir, "qxtd.db"))
	if err != nil {
		t.Fatal(err)
	}
	var gz bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&gz, gzip.BestCompression)
	if _, err := zw.Write(db); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	js, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	base := filepath.Join(outDir, commit+"-"+stop)
	if err := os.MkdirAll(outDir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(base+".db.gz", gz.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(base+".json", append(js, '\n'), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("%s: store %d bytes, %d gzipped", base, len(db), gz.Len())

	if os.Getenv("UPGRADEGEN_CHECK") == "1" {
		t.Run("upgrade", func(t *testing.T) {
			start := time.Now()
			dir := t.TempDir()
			checkUpgrade(t, dir, readUpgradeStore(t, base, dir))
			t.Logf("upgrade checked in %v", time.Since(start))
		})
	}
}

// buildCommit builds cmd/qxtd at commit in a git worktree it removes after.
func buildCommit(t *testing.T, commit string) string {
	t.Helper()
	tmp := t.TempDir()
	src := filepath.Join(tmp, "src")
	if out, err := exec.Command("git", "worktree", "add", "--detach", src, commit).CombinedOutput(); err != nil {
		t.Fatalf("git worktree add %s: %v\n%s", commit, err, out)
	}
	defer func() {
		if out, err := exec.Command("git", "worktree", "remove", "--force", src).CombinedOutput(); err != nil {
			t.Errorf("git worktree remove: %v\n%s", err, out)
		}
	}()
	bin := filepath.Join(tmp, "qxtd-"+commit)
	start := time.Now()
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/qxtd")
	cmd.Dir = src
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build at %s: %v\n%s", commit, err, out)
	}
	t.Logf("built %s in %v", commit, time.Since(start))
	return bin
}
