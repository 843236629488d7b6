package segment

import (
	"bytes"
	"fmt"
	"sort"
	"sync"
	"time"
)

// ReassemblerConfig bounds a Reassembler. Zero values take the defaults.
type ReassemblerConfig struct {
	Timeout   time.Duration // a group older than this (since its first part) expires; default 5 min
	MaxGroups int           // pending messages at once; default 10,000
	MaxParts  int           // largest accepted total, at most 255; default 255
	MaxBytes  int           // Data held across all groups; default 16 MiB
}

// Incomplete is a message whose parts did not all arrive in time.
type Incomplete struct {
	Key      string
	Ref      uint16
	Total    uint8
	Received int       // parts that did arrive
	Started  time.Time // arrival of the first part
}

// Reassembler collects the parts of messages that ESMEs split themselves
// (UDH or SAR) until each is complete. Parts are grouped by (key, ref,
// total): the caller chooses key so that references of different senders
// and recipients cannot collide, e.g. system_id + source + destination.
//
// It keeps everything in memory, runs no goroutine and reads no clock:
// callers pass now, and call Expire periodically. It is safe for
// concurrent use.
type Reassembler struct {
	cfg ReassemblerConfig

	mu     sync.Mutex
	groups map[groupKey]*group
	bytes  int
}

type groupKey struct {
	key   string
	ref   uint16
	total uint8
}

type group struct {
	started time.Time
	frags   []*Fragment // index seq-1; nil until that part arrives
	n       int
	bytes   int
}

// NewReassembler returns an empty Reassembler; out-of-range config values
// are replaced by the defaults.
func NewReassembler(cfg ReassemblerConfig) *Reassembler {
	if cfg.Timeout <= 0 {
		cfg.Timeout = 5 * time.Minute
	}
	if cfg.MaxGroups <= 0 {
		cfg.MaxGroups = 10000
	}
	if cfg.MaxParts <= 0 || cfg.MaxParts > maxSegments {
		cfg.MaxParts = maxSegments
	}
	if cfg.MaxBytes <= 0 {
		cfg.MaxBytes = 16 << 20
	}
	return &Reassembler{cfg: cfg, groups: make(map[groupKey]*group)}
}

// Add records one part. When it completes its message (or is not part of a
// concatenation at all) Add returns the decoded text and done = true and
// forgets the group. An identical repeat of a part already held is
// accepted and ignored; a different one fails with ErrDuplicatePart.
// Errors leave the Reassembler as it was, except a decoding error of a
// complete message, which drops that message.
func (r *Reassembler) Add(key string, f Fragment, now time.Time) (text string, done bool, err error) {
	if f.Info == nil || !f.Info.Concat || f.Info.Total == 1 {
		text, err = f.Text()
		return text, err == nil, err
	}
	info := f.Info
	if int(info.Total) > r.cfg.MaxParts {
		return "", false, fmt.Errorf("%w: %d parts, limit %d", ErrTooManyParts, info.Total, r.cfg.MaxParts)
	}
	if info.Seq == 0 || info.Seq > info.Total {
		return "", false, fmt.Errorf("%w: part %d of %d", ErrBadConcat, info.Seq, info.Total)
	}

	r.mu.Lock()
	defer r.mu.Unlock()
	k := groupKey{key, info.Ref, info.Total}
	g := r.groups[k]
	if g != nil {
		if old := g.frags[info.Seq-1]; old != nil {
			if old.Coding == f.Coding && bytes.Equal(old.Data, f.Data) {
				return "", false, nil
			}
			return "", false, fmt.Errorf("%w: part %d of %d, ref %d", ErrDuplicatePart, info.Seq, info.Total, info.Ref)
		}
	}
	if g == nil && len(r.groups) >= r.cfg.MaxGroups {
		return "", false, fmt.Errorf("%w: %d messages pending", ErrTooManyPending, len(r.groups))
	}
	if r.bytes+len(f.Data) > r.cfg.MaxBytes {
		return "", false, fmt.Errorf("%w: %d octets pending", ErrTooManyPending, r.bytes)
	}
	if g == nil {
		g = &group{started: now, frags: make([]*Fragment, info.Total)}
		r.groups[k] = g
	}
	// Keep a copy: the caller's buffers may be reused for the next PDU.
	c := &Fragment{Coding: f.Coding, Data: bytes.Clone(f.Data)}
	g.frags[info.Seq-1] = c
	g.n++
	g.bytes += len(c.Data)
	r.bytes += len(c.Data)
	if g.n < len(g.frags) {
		return "", false, nil
	}
	r.drop(k, g)
	text, err = joinText(g.frags)
	if err != nil {
		return "", false, fmt.Errorf("ref %d: %w", info.Ref, err)
	}
	return text, true, nil
}

func (r *Reassembler) drop(k groupKey, g *group) {
	delete(r.groups, k)
	r.bytes -= g.bytes
}

// Expire forgets the messages whose first part arrived Timeout or longer
// before now and returns them, oldest first.
func (r *Reassembler) Expire(now time.Time) []Incomplete {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []Incomplete
	for k, g := range r.groups {
		if now.Sub(g.started) >= r.cfg.Timeout {
			out = append(out, Incomplete{Key: k.key, Ref: k.ref, Total: k.total, Received: g.n, Started: g.started})
			r.drop(k, g)
		}
	}
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if !a.Started.Equal(b.Started) {
			return a.Started.Before(b.Started)
		}
		if a.Key != b.Key {
			return a.Key < b.Key
		}
		if a.Ref != b.Ref {
			return a.Ref < b.Ref
		}
		return a.Total < b.Total
	})
	return out
}

// Pending returns the number of incomplete messages held (for a gauge).
func (r *Reassembler) Pending() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.groups)
}
