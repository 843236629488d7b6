package api

import (
	"net/http/httptest"
	"strings"
	"testing"
)

func TestListCursor(t *testing.T) {
	good := []string{"c1.1-0", "c1.1-x", "c1.1-281474976710700.2-x.65535-18446744073709551615"}
	for _, s := range good {
		ps, err := parseListCursor(s)
		if err != nil || formatListCursor(ps) != s {
			t.Errorf("%q: %v, %v", s, ps, err)
		}
	}
	bad := []string{"", "c1", "c1.", "c2.1-0", "1", "281474976710700", "c1.0-0", "c1.1-01", "c1.01-0", "c1.1-+1",
		"c1.1-0.1-0", "c1.2-0.1-0", "c1.65536-0", "c1.1-18446744073709551616", "c1.1", "c1.1-0.", "c1.1-y", "c1.1- 0",
		"c1.1-0-0", strings.Repeat("c1.1-0", 2000)}
	for _, s := range bad {
		if ps, err := parseListCursor(s); err == nil {
			t.Errorf("%q accepted: %v", s, ps)
		}
	}
	// MaxListCursor is the longest cursor of MaxListCursorNodes nodes.
	var ps []listPos
	for i := range MaxListCursorNodes {
		ps = append(ps, listPos{Node: uint16(65535 - i), Pos: ^uint64(0)})
	}
	if s := formatListCursor(ps); len(s) > MaxListCursor {
		t.Errorf("the longest cursor has %d bytes, over %d", len(s), MaxListCursor)
	} else if _, err := parseListCursor(s); err != nil {
		t.Errorf("the longest cursor: %v", err)
	}
	ps = append(ps, listPos{Node: 1})
	if _, err := parseListCursor(formatListCursor(ps)); err == nil {
		t.Errorf("%d nodes accepted", len(ps))
	}
}

// A numeric cursor (a single node's) in a cluster is refused, saying why.
func TestListCursorNumericInCluster(t *testing.T) {
	p := &synthetic{self: 9, nodes: map[uint16]*fakeNode{1: {}}}
	s := newSyntheticServer(t, p)
	w := httptest.NewRecorder()
	if _, _, ok := s.listStreams(t.Context(), w, "before", "281474976710700"); ok || w.Code != 400 ||
		!strings.Contains(w.Body.String(), "before: in a cluster") {
		t.Fatalf("%d %s", w.Code, w.Body)
	}
}

// Any string either parses to the cursor it spells (one spelling each,
// within the bounds) or is refused; none panics.
func FuzzListCursor(f *testing.F) {
	for _, s := range []string{"c1.1-0", "c1.1-x.2-281474976710700", "c1.3-18446744073709551615", "c1.1-01", "281474976710700"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		ps, err := parseListCursor(s)
		if err != nil {
			return
		}
		if len(s) > MaxListCursor || len(ps) == 0 || len(ps) > MaxListCursorNodes {
			t.Fatalf("%q accepted: %d nodes", s, len(ps))
		}
		if got := formatListCursor(ps); got != s {
			t.Fatalf("%q parses to %v, spelt %q", s, ps, got)
		}
	})
}
