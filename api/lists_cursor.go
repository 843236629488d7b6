package api

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// The cursor of a list merged over the nodes of a cluster (GET
// /v1/messages, /v1/scheduled, /v1/inbox in cluster mode). Each node pages
// its own store with a numeric cursor (the id below which its next page
// begins); the cluster's cursor holds every node's, in one URL-safe
// string:
//
//	c1.<node>-<position>[.<node>-<position>…]
//
// nodes in ascending order, each at most once; a position is the node's
// cursor in decimal (0: from its newest) or x: the node has nothing more.
// Every number is canonical (no sign, no leading zero), so that a cursor
// has one spelling. A node of the cluster that the cursor does not name
// (it joined since) is read from its newest. The cursor is at most
// MaxListCursor bytes and names at most MaxListCursorNodes nodes; anything
// else is refused (400 invalid, naming the parameter).

// Bounds of a cluster list's cursor.
const (
	MaxListCursorNodes = 256
	// MaxListCursor is the longest cursor: "c1" and 256 entries of the
	// longest node and position (".65535-18446744073709551615").
	MaxListCursor = 2 + MaxListCursorNodes*27
)

// listCursorVersion starts every cluster cursor; a numeric cursor (a
// single node's) never does.
const listCursorVersion = "c1"

// listPos is one node's place in a cluster list.
type listPos struct {
	Node uint16
	Pos  uint64 // the node's cursor; 0: from its newest
	Done bool   // the node has nothing more
}

var errListCursor = errors.New("malformed cluster cursor")

// parseListCursor parses a cluster cursor strictly.
func parseListCursor(s string) ([]listPos, error) {
	if len(s) > MaxListCursor {
		return nil, fmt.Errorf("%w: over %d bytes", errListCursor, MaxListCursor)
	}
	rest, ok := strings.CutPrefix(s, listCursorVersion+".")
	if !ok {
		return nil, fmt.Errorf("%w: not %s.…", errListCursor, listCursorVersion)
	}
	var out []listPos
	for entry := range strings.SplitSeq(rest, ".") {
		if len(out) == MaxListCursorNodes {
			return nil, fmt.Errorf("%w: over %d nodes", errListCursor, MaxListCursorNodes)
		}
		node, pos, ok := strings.Cut(entry, "-")
		if !ok {
			return nil, fmt.Errorf("%w: entry %q is not node-position", errListCursor, entry)
		}
		n, ok := canonicalUint(node, 16)
		if !ok || n == 0 {
			return nil, fmt.Errorf("%w: node %q", errListCursor, node)
		}
		p := listPos{Node: uint16(n)}
		if pos == "x" {
			p.Done = true
		} else if p.Pos, ok = canonicalUint(pos, 64); !ok {
			return nil, fmt.Errorf("%w: position %q", errListCursor, pos)
		}
		if len(out) > 0 && out[len(out)-1].Node >= p.Node {
			return nil, fmt.Errorf("%w: node %d out of order", errListCursor, p.Node)
		}
		out = append(out, p)
	}
	return out, nil
}

// canonicalUint parses s as a decimal of at most bits bits, spelled as
// strconv.FormatUint spells it.
func canonicalUint(s string, bits int) (uint64, bool) {
	n, err := strconv.ParseUint(s, 10, bits)
	if err != nil || strconv.FormatUint(n, 10) != s {
		return 0, false
	}
	return n, true
}

// formatListCursor is the cursor of ps (sorted by node here).
func formatListCursor(ps []listPos) string {
	ps = slices.Clone(ps)
	slices.SortFunc(ps, func(a, b listPos) int { return int(a.Node) - int(b.Node) })
	var b strings.Builder
	b.WriteString(listCursorVersion)
	for _, p := range ps {
		b.WriteByte('.')
		b.WriteString(strconv.FormatUint(uint64(p.Node), 10))
		b.WriteByte('-')
		if p.Done {
			b.WriteByte('x')
		} else {
			b.WriteString(strconv.FormatUint(p.Pos, 10))
		}
	}
	return b.String()
}
