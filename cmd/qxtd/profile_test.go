package main

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/qxtd/qxtd/smpp"
)

// serve --cpuprofile and --memprofile write Go profiles of the whole run
// when the daemon stops: gzipped protocol buffers naming their sample
// types (what go tool pprof reads).
func TestServeWritesProfiles(t *testing.T) {
	dir := t.TempDir()
	_, simAddr := startSim(t, smpp.SimOptions{})
	cfg := writeConfig(t, dir, simAddr, "")
	cpu, mem := filepath.Join(dir, "cpu.pprof"), filepath.Join(dir, "allocs.pprof")
	d := startDaemonArgs(t, os.Args[0], []string{"serve", "--config", cfg, "--cpuprofile", cpu, "--memprofile", mem})
	d.stop(t)
	for path, sampleType := range map[string]string{cpu: "cpu", mem: "alloc_space"} {
		f, err := os.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		zr, err := gzip.NewReader(f)
		if err != nil {
			t.Fatalf("%s: %v", filepath.Base(path), err)
		}
		raw, err := io.ReadAll(zr)
		f.Close()
		if err != nil {
			t.Fatalf("%s: %v", filepath.Base(path), err)
		}
		if !bytes.Contains(raw, []byte(sampleType)) {
			t.Errorf("%s: %d bytes without the sample type %q", filepath.Base(path), len(raw), sampleType)
		}
	}
}

// Each start logs how long the store took to open and how big it is: the
// one line that tells an operator a slow start was the walk of a file a
// crash left (README: Operating, **Restarts**). A clean stop, then a start, logs it again.
func TestStoreOpenedLogged(t *testing.T) {
	dir := t.TempDir()
	_, simAddr := startSim(t, smpp.SimOptions{})
	cfg := writeConfig(t, dir, simAddr, "")
	for i := range 2 {
		d := startDaemon(t, cfg)
		rec := d.waitLog(t, "store opened", 0, 10*time.Second)
		took, err := time.ParseDuration(fmt.Sprint(rec["took"]))
		if bytes, _ := rec["bytes"].(float64); err != nil || took < 0 || bytes <= 0 || rec["path"] == "" {
			t.Errorf("start %d: store opened %v (took: %v)", i+1, rec, err)
		}
		d.stop(t)
	}
}
