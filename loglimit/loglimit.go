package loglimit

import (
	"context"
	"log/slog"
	"net"
	"sync"
	"time"
)

// Options configure a Handler. Zero values take the defaults.
type Options struct {
	// Burst is how many lines of one key pass before limiting: 5.
	Burst int
	// Interval is how often one more line of a limited key passes: 10 s.
	Interval time.Duration
	// MaxKeys bounds the keys remembered: 4,096.
	MaxKeys int
	// MaxReasons bounds the distinct reasons given to OnSuppress: 64.
	MaxReasons int
	// KeyAttr names the attribute that keys lines with their message:
	// "remote".
	KeyAttr string
	// OnSuppress is called for every line dropped, with its reason.
	OnSuppress func(reason string)
	Now        func() time.Time
}

// ReasonOther is the reason of suppressed lines past MaxReasons messages.
const ReasonOther = "other"

// Handler wraps another slog.Handler; see the package documentation.
type Handler struct {
	next    slog.Handler
	st      *state
	key     string // KeyAttr's value given by WithAttrs
	grouped bool   // attributes added now land in a group
}

type state struct {
	opt     Options
	mu      sync.Mutex
	keys    map[string]*bucket
	reasons map[string]struct{}
	swept   time.Time
}

type bucket struct {
	tokens     float64
	last       time.Time
	suppressed int
}

// New returns a Handler that limits what reaches next.
func New(next slog.Handler, opt Options) *Handler {
	if opt.Burst <= 0 {
		opt.Burst = 5
	}
	if opt.Interval <= 0 {
		opt.Interval = 10 * time.Second
	}
	if opt.MaxKeys <= 0 {
		opt.MaxKeys = 4096
	}
	if opt.MaxReasons <= 0 {
		opt.MaxReasons = 64
	}
	if opt.KeyAttr == "" {
		opt.KeyAttr = "remote"
	}
	if opt.Now == nil {
		opt.Now = time.Now
	}
	return &Handler{next: next, st: &state{
		opt: opt, keys: make(map[string]*bucket), reasons: make(map[string]struct{}),
	}}
}

var _ slog.Handler = (*Handler)(nil)

// Enabled implements slog.Handler.
func (h *Handler) Enabled(ctx context.Context, l slog.Level) bool { return h.next.Enabled(ctx, l) }

// WithAttrs implements slog.Handler.
func (h *Handler) WithAttrs(as []slog.Attr) slog.Handler {
	c := *h
	c.next = h.next.WithAttrs(as)
	if !h.grouped {
		for _, a := range as {
			if a.Key == h.st.opt.KeyAttr {
				c.key = a.Value.String()
			}
		}
	}
	return &c
}

// WithGroup implements slog.Handler.
func (h *Handler) WithGroup(name string) slog.Handler {
	c := *h
	c.next = h.next.WithGroup(name)
	c.grouped = c.grouped || name != ""
	return &c
}

// Handle implements slog.Handler.
func (h *Handler) Handle(ctx context.Context, r slog.Record) error {
	peer := h.key
	if !h.grouped {
		r.Attrs(func(a slog.Attr) bool {
			if a.Key == h.st.opt.KeyAttr {
				peer = a.Value.String()
				return false
			}
			return true
		})
	}
	if peer == "" {
		return h.next.Handle(ctx, r)
	}
	if host, _, err := net.SplitHostPort(peer); err == nil {
		peer = host // one peer, whichever of its connections
	}
	pass, dropped, reason := h.st.take(r.Message, peer)
	if !pass {
		if h.st.opt.OnSuppress != nil {
			h.st.opt.OnSuppress(reason)
		}
		return nil
	}
	if dropped > 0 {
		r = r.Clone()
		r.AddAttrs(slog.Int("suppressed", dropped))
	}
	return h.next.Handle(ctx, r)
}

// take decides one line of key (msg, peer): whether it passes, how many
// of the key's lines were dropped since the last that passed, and the
// reason to count it under if it does not pass.
func (s *state) take(msg, peer string) (pass bool, dropped int, reason string) {
	now := s.opt.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	key := msg + "\x00" + peer
	b := s.keys[key]
	if b == nil {
		if len(s.keys) >= s.opt.MaxKeys {
			s.sweep(now)
		}
		if len(s.keys) >= s.opt.MaxKeys {
			key = msg + "\x00*" // every new peer of this message shares one key
			b = s.keys[key]
		}
		if b == nil {
			b = &bucket{tokens: float64(s.opt.Burst), last: now}
			s.keys[key] = b
		}
	}
	b.tokens = min(float64(s.opt.Burst), b.tokens+now.Sub(b.last).Seconds()/s.opt.Interval.Seconds())
	b.last = now
	if b.tokens >= 1 {
		b.tokens--
		dropped, b.suppressed = b.suppressed, 0
		return true, dropped, ""
	}
	b.suppressed++
	if _, ok := s.reasons[msg]; ok || len(s.reasons) < s.opt.MaxReasons {
		s.reasons[msg] = struct{}{}
		return false, 0, msg
	}
	return false, 0, ReasonOther
}

// sweep forgets keys whose burst has refilled (as good as new), at most
// once per Interval so a full table under attack costs no more.
func (s *state) sweep(now time.Time) {
	if now.Sub(s.swept) < s.opt.Interval {
		return
	}
	s.swept = now
	full := time.Duration(s.opt.Burst) * s.opt.Interval
	for k, b := range s.keys {
		if now.Sub(b.last) >= full {
			delete(s.keys, k)
		}
	}
}
