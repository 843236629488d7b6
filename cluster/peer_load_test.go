package cluster

import (
	"net/http"
	"net/http/httptest"
	"reflect"
	"sync/atomic"
	"testing"
)

// loadBackend is a recordingBackend that also answers its load.
type loadBackend struct {
	*recordingBackend
	load     PeerLoad
	measured atomic.Bool
}

func (b *loadBackend) Load() (PeerLoad, bool) { return b.load, b.measured.Load() }

var _ PeerLoadBackend = (*loadBackend)(nil)

// A node answers its load on GET /peer/v1/load, signed like every peer
// request; before its first measure it answers 503; a backend without
// it answers 404.
func TestPeerLoad(t *testing.T) {
	us := 61.5
	b := &loadBackend{recordingBackend: &recordingBackend{}, load: PeerLoad{Seconds: 59.9, Accepted: 74_070, CPUCores: 0.45,
		CPUMicrosPerMessage: &us, CommitsPerSecond: 812, WrittenBytesPerSecond: 3 << 20,
		TopEnterprises: []PeerEnterpriseLoad{{Enterprise: "E7", Accepted: 52_000}, {Enterprise: "E2", Accepted: 22_070}},
		Upstreams: []PeerUpstreamLoad{{Name: "cmcc", Relayed: 70_000, Throttled: 12, Failed: 3, SubmitMeanMS: &us, TPS: 2000,
			PacePerSecond: &us, InFlight: 180, Slots: 200}}}}
	srv := httptest.NewServer(PeerHandler(secret, b, nil))
	t.Cleanup(srv.Close)
	c := NewPeerClient(2, secret, srv.Client())

	if _, err := c.Load(t.Context(), srv.URL); !isStatus(err, http.StatusServiceUnavailable) {
		t.Errorf("before a measure: %v", err)
	}
	b.measured.Store(true)
	if l, err := c.Load(t.Context(), srv.URL); err != nil || !reflect.DeepEqual(l, b.load) {
		t.Errorf("load: %+v, %v; want %+v", l, err, b.load)
	}
	if _, err := NewPeerClient(2, []byte("wrong"), srv.Client()).Load(t.Context(), srv.URL); !isStatus(err, http.StatusUnauthorized) {
		t.Errorf("wrong secret: %v", err)
	}
	plain, _ := newPeerServer(t)
	if _, err := c.Load(t.Context(), plain.URL); !isStatus(err, http.StatusNotFound) {
		t.Errorf("a backend without it: %v", err)
	}
}
