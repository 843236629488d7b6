package loglimit_test

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/qxtd/qxtd/loglimit"
)

type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

func TestBurstThenOnePerInterval(t *testing.T) {
	var out bytes.Buffer
	clk := &clock{t: time.Unix(1e9, 0)}
	suppressed := map[string]int{}
	h := loglimit.New(slog.NewTextHandler(&out, nil), loglimit.Options{
		Burst: 2, Interval: time.Second, MaxKeys: 2, Now: clk.now,
		OnSuppress: func(r string) { suppressed[r]++ },
	})
	log := slog.New(h)
	peer := log.With("remote", "10.0.0.1:4000")
	for range 10 {
		peer.Info("malformed pdu")
	}
	log.Info("malformed pdu", "remote", "10.0.0.1:4001") // same host, other port: same key
	log.Info("no peer here")                             // no key: passes
	clk.t = clk.t.Add(time.Second)
	peer.Info("malformed pdu")
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 4 {
		t.Fatalf("got %d lines, want 4:\n%s", len(lines), out.String())
	}
	if !strings.Contains(lines[3], "suppressed=9") {
		t.Errorf("last line %q, want suppressed=9", lines[3])
	}
	if suppressed["malformed pdu"] != 9 {
		t.Errorf("OnSuppress counted %v, want 9 malformed pdu", suppressed)
	}

	// Keys are bounded: past MaxKeys, new peers of a message share one.
	out.Reset()
	for i := range 50 {
		log.Info("bind refused", "remote", "10.1.0."+string(rune('0'+i%10))+string(rune('0'+i/10)))
	}
	if n := strings.Count(out.String(), "\n"); n > 2*2+2 {
		t.Errorf("%d lines from 50 peers with MaxKeys 2, burst 2", n)
	}
}
