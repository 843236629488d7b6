package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

// TestRoundsApart: with -rounds, -json-rounds has a line for every round
// of every scenario, in the order they ran, and -json the median round
// of each; -cpuprofile-dir keeps each round's profile and metrics under
// a name of its own, where one round keeps the plain names.
func TestRoundsApart(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	bin := buildQxtd(t, ctx)
	dir := t.TempDir()
	profiles := filepath.Join(dir, "prof")
	rounds, medians := filepath.Join(dir, "rounds.jsonl"), filepath.Join(dir, "medians.jsonl")
	var stdout, stderr bytes.Buffer
	args := []string{"-qxtd", bin, "-config", "../../configs/qxtd.yaml", "-scenarios", "direct/no-receipts,qxtd/no-receipts",
		"-n", "200", "-warmup", "20", "-window", "20", "-rounds", "2", "-stall", "10s",
		"-json", medians, "-json-rounds", rounds, "-cpuprofile-dir", profiles}
	if rc := run(args, &stdout, &stderr); rc != 0 {
		t.Fatalf("qxtd-bench %q: exit %d\n%s\n%s", args, rc, stdout.String(), stderr.String())
	}
	type line struct {
		Scenario string `json:"scenario"`
		Round    int    `json:"round"`
		Answered int    `json:"answered"`
	}
	read := func(path string) []line {
		t.Helper()
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		var ls []line
		sc := bufio.NewScanner(bytes.NewReader(b))
		for sc.Scan() {
			var l line
			if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
				t.Fatalf("%s: %v in %q", path, err, sc.Text())
			}
			ls = append(ls, l)
		}
		return ls
	}
	want := []line{{"direct/no-receipts", 1, 200}, {"qxtd/no-receipts", 1, 200}, {"direct/no-receipts", 2, 200}, {"qxtd/no-receipts", 2, 200}}
	if got := read(rounds); !slices.Equal(got, want) {
		t.Errorf("-json-rounds: %+v, want %+v", got, want)
	}
	got := read(medians)
	if len(got) != 2 || got[0].Scenario != "direct/no-receipts" || got[1].Scenario != "qxtd/no-receipts" {
		t.Errorf("-json: %+v, want a line for each scenario", got)
	}
	for _, l := range got {
		if l.Round != 1 && l.Round != 2 {
			t.Errorf("-json: %+v does not say which round it is", l)
		}
	}
	for _, name := range []string{"qxtd-no-receipts.r1.pprof", "qxtd-no-receipts.r2.pprof",
		"qxtd-no-receipts.r1.allocs.pprof", "qxtd-no-receipts.r2.allocs.pprof",
		"qxtd-no-receipts.r1.metrics", "qxtd-no-receipts.r2.metrics"} {
		if fi, err := os.Stat(filepath.Join(profiles, name)); err != nil || fi.Size() == 0 {
			t.Errorf("-cpuprofile-dir: %s: %v", name, err)
		}
	}
	if _, err := os.Stat(filepath.Join(profiles, "qxtd-no-receipts.pprof")); err == nil {
		t.Error("-cpuprofile-dir: a profile without its round beside the rounds' own")
	}
}

func TestFileBase(t *testing.T) {
	for _, c := range []struct {
		sc   scenario
		want string
	}{
		{scenario{Name: "qxtd/receipts"}, "qxtd-receipts"},
		{scenario{Name: "base:qxtd/receipts", Round: 3}, "base:qxtd-receipts.r3"},
		{scenario{Name: "qxtd-cluster-relay/no-receipts", Round: 1}, "qxtd-cluster-relay-no-receipts.r1"},
	} {
		if got := fileBase(c.sc); got != c.want {
			t.Errorf("fileBase(%+v) = %q, want %q", c.sc, got, c.want)
		}
	}
}
