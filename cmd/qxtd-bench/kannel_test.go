package main

import (
	"context"
	"errors"
	"net"
	"testing"
	"time"
)

// TestStartKannelRetriesTakenPort: a bearerbox that cannot listen on its
// smsbox port, taken between freeAddr's check and its start, panics and
// exits; startKannel starts Kannel again with new ports, at most
// portAttempts times.
func TestStartKannelRetriesTakenPort(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	peer := startTestPeer(t, ctx, 10*time.Millisecond)
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	// takenOnce hands out the taken address as the smsbox port (the
	// second of the three) of the first `tries` tries.
	addrs := func(tries int) (func() (string, error), *int) {
		calls := 0
		return func() (string, error) {
			calls++
			if calls%3 == 2 && calls <= 3*tries {
				return taken.Addr().String(), nil
			}
			return freeAddr()
		}, &calls
	}

	addr, calls := addrs(1)
	k, err := startKannelOn(ctx, peer.Addr(), 1, 10, addr)
	if err != nil {
		t.Fatalf("taken once, then free: %v", err)
	}
	k.Stop()
	if *calls != 6 {
		t.Errorf("%d ports drawn, want 6 (two tries)", *calls)
	}

	addr, calls = addrs(portAttempts)
	if _, err := startKannelOn(ctx, peer.Addr(), 1, 10, addr); !errors.Is(err, errPortTaken) {
		t.Errorf("taken every time: %v, want errPortTaken", err)
	}
	if *calls != 3*portAttempts {
		t.Errorf("taken every time: %d ports drawn, want %d", *calls, 3*portAttempts)
	}
}

// TestFreeAddrBelowEphemeralRange: freeAddr's ports are not of the range
// the kernel gives outgoing connections and ":0" listeners, and are free.
func TestFreeAddrBelowEphemeralRange(t *testing.T) {
	lo := ephemeralLow()
	if lo == 0 {
		t.Fatal("the ephemeral range cannot be read")
	}
	for range 20 {
		a, err := freeAddr()
		if err != nil {
			t.Fatal(err)
		}
		_, port, err := splitAddr(a)
		if err != nil {
			t.Fatal(err)
		}
		if port >= lo || port < lo/2 {
			t.Errorf("port %d, want in [%d, %d)", port, lo/2, lo)
		}
		ln, err := net.Listen("tcp", a)
		if err != nil {
			t.Errorf("%s not free: %v", a, err)
			continue
		}
		ln.Close()
	}
}
