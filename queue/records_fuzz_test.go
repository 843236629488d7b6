package queue

import (
	"bytes"
	"encoding/json"
	"errors"
	"reflect"
	"testing"
	"time"
)

// The store's records other than messages (FuzzDecodeMessage) are read
// back from the file too, so a damaged file reaches each decoder: each
// must refuse what it did not write with ErrCorrupt (or, for keys, false),
// never panic, and give back what its encoder wrote.

func corruptOnly(t *testing.T, err error) {
	t.Helper()
	if err != nil && !errors.Is(err, ErrCorrupt) {
		t.Fatalf("error not ErrCorrupt: %v", err)
	}
}

func FuzzDecodeOrphan(f *testing.F) {
	at := time.Unix(1_790_000_000, 123).UTC()
	f.Add(encodeOrphan(nil, &orphan{DLR: DLR{Upstream: "up", SMSCID: "5c", State: StateDelivered, ErrCode: "000", DoneAt: at}, ReceivedAt: at}))
	f.Add(encodeOrphan(nil, &orphan{DLR: DLR{Upstream: "", SMSCID: "", State: StateUndeliverable}}))
	f.Add([]byte{orphanVersion})
	f.Fuzz(func(t *testing.T, b []byte) {
		o, err := decodeOrphan(b)
		corruptOnly(t, err)
		if err != nil {
			return
		}
		if !o.State.Final() {
			t.Fatalf("decoded an orphan in state %s", o.State)
		}
		again, err := decodeOrphan(encodeOrphan(nil, o))
		if err != nil || !reflect.DeepEqual(again, o) {
			t.Fatalf("round trip: %+v, %v; want %+v", again, err, o)
		}
	})
}

// FuzzDecodeCounters: the fixed-size usage and purged records.
func FuzzDecodeCounters(f *testing.F) {
	f.Add(encodeUsage(usage{Reserved: 3, Charged: 1 << 40}))
	f.Add(encodePurged(purged{Parts: 7, Delivered: -1}))
	f.Add([]byte{usageVersion, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		u, err := decodeUsage(b)
		corruptOnly(t, err)
		if err == nil && !bytes.Equal(encodeUsage(u), b) {
			t.Fatalf("usage %x decoded as %+v, which encodes as %x", b, u, encodeUsage(u))
		}
		p, err := decodePurged(b)
		corruptOnly(t, err)
		if err == nil && !bytes.Equal(encodePurged(p), b) {
			t.Fatalf("purged %x decoded as %+v, which encodes as %x", b, p, encodePurged(p))
		}
	})
}

func FuzzDecodeFragment(f *testing.F) {
	g := FragmentGroup{Account: "acct", Source: "10690001", Dest: "13800000000", Ref: 0x1234, Total: 3}
	fr := &Fragment{FragmentGroup: g, Seq: 2, ID: 42, Enterprise: "T1", ArrivedAt: time.Unix(1_790_000_000, 0).UTC(),
		Coding: 8, Data: []byte("你好"), ClientCoding: 8, RegisteredDelivery: 1, SourceTON: 5, DestTON: 1, DestNPI: 1,
		SendAt: time.Unix(1_790_000_100, 0).UTC(), Signature: "【测试】"}
	f.Add(fragKey(g, 2), encodeFragment(fr))
	f.Add(fragKey(g, 4), encodeFragment(fr)) // seq past total
	urgent := *fr
	urgent.Priority = true
	f.Add(fragKey(g, 2), encodeFragment(&urgent)) // version 2: a flags byte after the fields
	f.Add([]byte("a\x00b\x00c\x00\x00\x01\x01\x00\x01"), []byte{fragVersion, 1})
	f.Fuzz(func(t *testing.T, k, v []byte) {
		fr, err := decodeFragment(k, v)
		corruptOnly(t, err)
		if err != nil {
			return
		}
		if fr.Seq == 0 || fr.Seq > fr.Total || fr.ID == 0 {
			t.Fatalf("decoded fragment seq %d of %d, id %d", fr.Seq, fr.Total, fr.ID)
		}
		if got := fragKey(fr.FragmentGroup, fr.Seq); !bytes.Equal(got, k) {
			t.Fatalf("key %q decoded as %v seq %d, which is key %q", k, fr.FragmentGroup, fr.Seq, got)
		}
		again, err := decodeFragment(k, encodeFragment(fr))
		if err != nil || !reflect.DeepEqual(again, fr) {
			t.Fatalf("round trip: %+v, %v; want %+v", again, err, fr)
		}
	})
}

func FuzzDecodeFragCount(f *testing.F) {
	f.Add(encodeFragCount(fragCount{Groups: 2, Bytes: 300}, fragNVersion))
	f.Add(encodeFragCount(fragCount{Bytes: 1 << 24}, fragNTotalsVersion))
	f.Add([]byte{fragNVersion, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		c, ver, err := decodeFragCount(b)
		corruptOnly(t, err)
		if err != nil {
			return
		}
		if c.Groups < 0 || c.Bytes < 0 {
			t.Fatalf("decoded negative counters %+v", c)
		}
		again, ver2, err := decodeFragCount(encodeFragCount(c, ver))
		if err != nil || again != c || ver2 != ver {
			t.Fatalf("round trip: %+v v%d, %v; want %+v v%d", again, ver2, err, c, ver)
		}
	})
}

func FuzzDecodeMO(f *testing.F) {
	f.Add(msgKey(7), append([]byte{moVersion}, `{"enterprise":"T1","source":"13800000000","dest":"1069000101","text":"TD","upstream":"up","received_at":"2026-12-04T05:00:00Z"}`...))
	f.Add(msgKey(7), []byte{moVersion})
	f.Add([]byte{1}, []byte{moVersion, '{', '}'})
	f.Fuzz(func(t *testing.T, k, v []byte) {
		m, err := decodeMO(k, v)
		corruptOnly(t, err)
		if err == nil && !bytes.Equal(msgKey(m.ID), k) {
			t.Fatalf("key %x decoded as id %d", k, m.ID)
		}
	})
}

// FuzzDecodeMOPart: a part of a reply the SMSC split (moparts.go), and
// the upstream's counters.
func FuzzDecodeMOPart(f *testing.F) {
	g := MOPartGroup{Upstream: "cmcc", Source: "13712345678", Dest: "10657500112", Ref: 0x1234, Total: 3}
	p := &MOPart{MOPartGroup: g, Seq: 2, Coding: 8, Data: []byte{0xd8, 0x3d}, SourceTON: 1, SourceNPI: 1,
		ReceivedAt: time.Unix(1_790_000_000, 5).UTC()}
	f.Add(moPartKey(g, 2), encodeMOPart(p))
	f.Add(moPartKey(g, 4), encodeMOPart(p)) // seq past total
	bin := &MOPart{MOPartGroup: g, Seq: 1, Coding: 4, Data: []byte{0, 0xff}, Binary: true, DataCoding: 0xF5,
		UDH: []byte{6, 5, 4, 0x0B, 0x84, 0x23, 0xF0}, ReceivedAt: time.Unix(1_790_000_000, 5).UTC()}
	f.Add(moPartKey(g, 1), encodeMOPart(bin))
	src, dst := uint16(9200), uint16(2948)
	bin.SourcePort, bin.DestPort = &src, &dst
	f.Add(moPartKey(g, 1), encodeMOPart(bin)) // port TLVs
	f.Add([]byte("u\x00\x00\x00\x00\x01\x02\x00\x01"), []byte{moPartVersion, 0, 0, 0, 0, 0})
	f.Add([]byte("cmcc"), encodeMOPartCount(moPartCount{Parts: 3, Bytes: 420}))
	f.Fuzz(func(t *testing.T, k, v []byte) {
		if c, err := decodeMOPartCount(v); err == nil {
			if again, err := decodeMOPartCount(encodeMOPartCount(c)); err != nil || again != c {
				t.Fatalf("counters %x decoded as %+v, which round trip as %+v, %v", v, c, again, err)
			}
		} else {
			corruptOnly(t, err)
		}
		p, err := decodeMOPart(k, v)
		corruptOnly(t, err)
		if err != nil {
			return
		}
		if p.Seq == 0 || p.Seq > p.Total || p.Upstream == "" {
			t.Fatalf("decoded part %d of %d from %q", p.Seq, p.Total, p.Upstream)
		}
		if got := moPartKey(p.MOPartGroup, p.Seq); !bytes.Equal(got, k) {
			t.Fatalf("key %q decoded as %v seq %d, which is key %q", k, p.MOPartGroup, p.Seq, got)
		}
		again, err := decodeMOPart(k, encodeMOPart(p))
		if err != nil || !reflect.DeepEqual(again, p) {
			t.Fatalf("round trip: %+v, %v; want %+v", again, err, p)
		}
	})
}

// FuzzParseKeys: the index keys and values that name a part.
func FuzzParseKeys(f *testing.F) {
	f.Add(timeKey(time.Unix(1_790_000_000, 5), Key{9, 2}))
	f.Add(partRef(Key{1 << 50, 255}))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		if ts, k, ok := parseTimeKey(b); ok {
			if ts >= 0 && !bytes.Equal(timeKey(time.Unix(0, ts), k), b) {
				t.Fatalf("time key %x parsed as %d %v", b, ts, k)
			}
		} else if len(b) == timeKeyLen {
			t.Fatalf("time key of %d bytes refused", len(b))
		}
		if k, ok := parsePartRef(b); ok && !bytes.Equal(partRef(k), b) {
			t.Fatalf("part ref %x parsed as %v", b, k)
		}
	})
}

// FuzzDecodeHookPosts: an enterprise's kept receipt webhook POSTs.
func FuzzDecodeHookPosts(f *testing.F) {
	at := time.Unix(1_790_000_000, 123).UTC()
	f.Add(encodeHookPosts([]HookPost{
		{At: at, URL: "https://a.example/r", Receipts: 1, Delivered: true, Status: 200, Duration: time.Millisecond},
		{At: at, URL: "https://a.example/r", Receipts: 1000, Status: 0, Duration: 10 * time.Second,
			Err: "Post \"https://a.example/r\": context deadline exceeded", FailingSince: at},
		{At: at, URL: "https://a.example/mo", Reply: true, Delivered: true, Status: 204, Duration: time.Millisecond},
	}))
	f.Add(encodeHookPosts(nil))
	f.Add([]byte{hookPostVersion, MaxHookPosts + 1})
	f.Fuzz(func(t *testing.T, b []byte) {
		ps, err := decodeHookPosts(b)
		corruptOnly(t, err)
		if err != nil {
			return
		}
		if len(ps) > MaxHookPosts {
			t.Fatalf("decoded %d posts", len(ps))
		}
		again, err := decodeHookPosts(encodeHookPosts(ps))
		if err != nil || !reflect.DeepEqual(again, ps) {
			t.Fatalf("round trip: %+v, %v; want %+v", again, err, ps)
		}
	})
}

// FuzzDecodeAnswer: an answer kept for an Idempotency-Key.
func FuzzDecodeAnswer(f *testing.F) {
	at := time.Unix(1_790_000_000, 123).UTC()
	f.Add(encodeAnswer(&Answer{Enterprise: "ENT", At: at, Code: 200, Sum: []byte("0123456789abcdef0123456789abcdef"),
		Header: []byte(`{"Content-Type":["application/json"]}`), Body: []byte(`{"messages":[]}`)}))
	f.Add(encodeAnswer(&Answer{At: at, Code: 503}))
	f.Add([]byte{answerVersion, 0, 0, 99})
	f.Fuzz(func(t *testing.T, b []byte) {
		a, err := decodeAnswer([]byte("k"), b)
		corruptOnly(t, err)
		meta, size, merr := decodeAnswerAs([]byte("k"), b, false)
		if (merr == nil) != (err == nil) {
			t.Fatalf("whole: %v; without the answer: %v", err, merr)
		}
		if err != nil {
			return
		}
		if size != a.Size() || meta.Header != nil || meta.Body != nil || meta.Code != a.Code || !meta.At.Equal(a.At) || string(meta.Sum) != string(a.Sum) {
			t.Fatalf("without the answer: %+v, size %d; whole %+v, size %d", meta, size, a, a.Size())
		}
		if a.Code < 100 || a.Code > 999 {
			t.Fatalf("decoded status %d", a.Code)
		}
		again, err := decodeAnswer([]byte("k"), encodeAnswer(a))
		if err != nil || !reflect.DeepEqual(again, a) {
			t.Fatalf("round trip: %+v, %v; want %+v", again, err, a)
		}
	})
}

// FuzzPeekMOSource: the inbox's peek at a stored reply's source, which
// lets a search by number pass over the others without decoding them,
// reads the source the record holds, whatever its other fields say
// (another field's text may spell `,"source":"`), or declines (a source
// JSON escapes); it never reads a wrong one.
func FuzzPeekMOSource(f *testing.F) {
	f.Add("T1", "alice", "12", "8613712345678", "TD")
	f.Add("T1", `x","source":"139`, "", "13712345678", `,"source":"13800000000"`)
	f.Add("", "", "", "<10086>", "")
	f.Fuzz(func(t *testing.T, enterprise, account, extension, source, text string) {
		m := &MO{ID: 7, Enterprise: enterprise, Account: account, Extension: extension, Source: source, Text: text}
		data, err := json.Marshal(m)
		if err != nil {
			return // not a record putMO could write
		}
		v := append([]byte{moVersion}, data...)
		src, ok := peekMOSource(v)
		got, err := decodeMO(msgKey(7), v)
		if err != nil {
			t.Fatalf("a record putMO writes does not decode: %v", err)
		}
		if ok && string(src) != got.Source {
			t.Fatalf("peeked source %q, the record's %q", src, got.Source)
		}
		if !ok && !bytes.Contains(data, []byte(`"source":"`)) {
			t.Fatalf("no source field in %s", data)
		}
	})
}
