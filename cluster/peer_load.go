package cluster

// A node's load, for another node's status. Each node measures its own
// last minute (messages accepted, CPU, commits, the enterprises that sent
// the most); the node that answers an operator's status asks the others
// on
//
//	GET /peer/v1/load → PeerLoad (404 if the backend is not a PeerLoadBackend)
//
// so that one page shows which node is busy and for whom.

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
)

// PeerLoad is a node's load over a span that ends now (its last minute),
// api.LoadStatus on the wire.
type PeerLoad struct {
	Seconds  float64 `json:"seconds"`
	Accepted uint64  `json:"accepted"`
	CPUCores float64 `json:"cpu_cores"`
	// CPUMicrosPerMessage is absent when no message was accepted.
	CPUMicrosPerMessage   *float64             `json:"cpu_us_per_message,omitempty"`
	CommitsPerSecond      float64              `json:"store_commits_per_second"`
	WrittenBytesPerSecond float64              `json:"store_written_bytes_per_second"`
	TopEnterprises        []PeerEnterpriseLoad `json:"top_enterprises"`
	// TopLimit is how many enterprises TopEnterprises names at most:
	// as many means there may be more. Absent from a node of a release
	// before it, which named 5.
	TopLimit  int                `json:"top_limit,omitempty"`
	Upstreams []PeerUpstreamLoad `json:"upstreams"`
}

// PeerUpstreamLoad is an upstream's part of a node's load
// (api.UpstreamLoad on the wire, its rate derived).
type PeerUpstreamLoad struct {
	Name          string   `json:"name"`
	Relayed       uint64   `json:"relayed"`
	Throttled     uint64   `json:"throttled"`
	Failed        uint64   `json:"failed"`
	SubmitMeanMS  *float64 `json:"submit_mean_ms,omitempty"`
	TPS           float64  `json:"tps"`
	PacePerSecond *float64 `json:"pace_per_second,omitempty"`
	InFlight      int      `json:"in_flight"`
	Slots         int      `json:"slots"`
}

// PeerEnterpriseLoad is an enterprise's messages accepted in the span.
type PeerEnterpriseLoad struct {
	Enterprise string `json:"enterprise"`
	Accepted   uint64 `json:"accepted"`
}

// PeerLoadBackend is the optional part of a PeerBackend that answers
// GET /peer/v1/load.
type PeerLoadBackend interface {
	// Load is the node's load now; false before it measured any.
	Load() (PeerLoad, bool)
}

// loadRoutes registers the load endpoint if backend answers it.
func (s *peerServer) loadRoutes() {
	lb, ok := s.backend.(PeerLoadBackend)
	if !ok {
		return
	}
	s.mux.HandleFunc("GET /peer/v1/load", func(w http.ResponseWriter, _ *http.Request) {
		l, ok := lb.Load()
		if !ok {
			http.Error(w, "not measured yet", http.StatusServiceUnavailable)
			return
		}
		writeJSON(w, l)
	})
}

// Load asks the node at peerURL for its load. An error means it is
// unknown.
func (c *PeerClient) Load(ctx context.Context, peerURL string) (PeerLoad, error) {
	var l PeerLoad
	data, err := c.do(ctx, http.MethodGet, peerURL, "/peer/v1/load", nil)
	if err != nil {
		return l, fmt.Errorf("cluster: load of %s: %w", peerURL, err)
	}
	if err := json.Unmarshal(data, &l); err != nil {
		return l, fmt.Errorf("cluster: load of %s: answer: %w", peerURL, err)
	}
	return l, nil
}
