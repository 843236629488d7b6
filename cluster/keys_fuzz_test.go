package cluster

import (
	"encoding/hex"
	"fmt"
	"reflect"
	"testing"
)

// What the cluster reads from the network by hand: a peer's Authorization
// header, and the etcd keys of the replica and of the ESME binds. Each
// parser must refuse what its writer would not write, never panic, and
// read back what its writer wrote.

func FuzzParseAuth(f *testing.F) {
	mac := make([]byte, 32)
	f.Add(fmt.Sprintf("%s %d:%d:%s", peerAuthScheme, 3, 1_790_000_000, hex.EncodeToString(mac)))
	f.Add(peerAuthScheme + " 0:1:")
	f.Add(peerAuthScheme + " 65536:-1:zz")
	f.Fuzz(func(t *testing.T, h string) {
		node, unix, mac, ok := parseAuth(h)
		if !ok {
			return
		}
		if node == 0 || len(mac) != 32 {
			t.Fatalf("%q parsed as node %d, a %d-byte MAC", h, node, len(mac))
		}
		n2, u2, m2, ok := parseAuth(fmt.Sprintf("%s %d:%d:%s", peerAuthScheme, node, unix, hex.EncodeToString(mac)))
		if !ok || n2 != node || u2 != unix || string(m2) != string(mac) {
			t.Fatalf("%q: written again, parsed as %d %d %x %v", h, n2, u2, m2, ok)
		}
	})
}

func FuzzReplicaKey(f *testing.F) {
	r := &Replica{prefix: "qxtd/"}
	bk := r.bucketKey([][]byte{[]byte("users"), {0, 1}})
	f.Add(keyOf(bk, []byte("alice")))
	f.Add(bk + markerTail)
	f.Add(bk + sequenceTail)
	f.Add("qxtd/data/bzz/k00")
	f.Fuzz(func(t *testing.T, k string) {
		p, ok := r.decode(k)
		if !ok {
			return
		}
		if len(p.buckets) == 0 {
			t.Fatalf("%q decoded without a bucket", k)
		}
		again := r.bucketKey(p.buckets)
		if p.tail == keyTail {
			again = keyOf(again, p.key)
		} else {
			again += string(p.tail)
		}
		p2, ok := r.decode(again)
		if !ok || !reflect.DeepEqual(p2, p) {
			t.Fatalf("%q decoded as %+v; written again %q, decoded as %+v %v", k, p, again, p2, ok)
		}
	})
}

func FuzzESMEBindKey(f *testing.F) {
	b := &ESMEBinds{prefix: "qxtd/esmebinds/"}
	f.Add(b.key(2, "esme one/€"), "T1")
	f.Add("qxtd/esmebinds/0/x", "")
	f.Add("qxtd/esmebinds/1/%zz", "T1")
	f.Fuzz(func(t *testing.T, key, value string) {
		e, ok := b.parse(key, value)
		if !ok {
			return
		}
		if e.Node == 0 || e.Account == "" {
			t.Fatalf("%q parsed as %+v", key, e)
		}
		e2, ok := b.parse(b.key(e.Node, e.Account), value)
		if !ok || e2 != e {
			t.Fatalf("%q parsed as %+v; written again, %+v %v", key, e, e2, ok)
		}
	})
}
