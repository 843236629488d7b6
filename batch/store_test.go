package batch

import (
	"bytes"
	"encoding/json"
	"testing"
	"time"

	"github.com/qxtd/qxtd/gateway"
)

// FuzzDecodeJobRecord: a stored job record read back at start (the store
// file may be damaged or written by another release) is refused with an
// error or decoded into one that encodes and decodes to itself; never a
// panic. The seeds are in testdata/fuzz/FuzzDecodeJobRecord too.
func FuzzDecodeJobRecord(f *testing.F) {
	created := time.Date(2026, 12, 5, 9, 0, 0, 0, time.UTC)
	running := jobRecord{V: jobRecordVersion, Enterprise: "E", Owner: "erin", Kind: KindTemplate, File: "名单.xlsx",
		Path: "/var/lib/qxtd/qxtd.db.batches/qxtd-batch-1", Rows: storedRows{Format: 2, Template: "{姓名}您好", NumberColumn: "手机号"},
		Request: gateway.SendRequest{Ingress: "batch", Source: "1069", RegisteredDelivery: 1, SendAt: created.Add(time.Hour)}, Created: created}
	done := running
	done.Path = ""
	done.Final = &Progress{State: JobDone, RowsRead: 3, Accepted: 2, Refused: 1, ErrorCount: 1,
		Errors: []RowError{{Row: 2, Number: "1", Reason: "invalid_number", Message: "号码不对"}}, CreatedAt: created, FinishedAt: created.Add(time.Minute)}
	cancelled := running
	cancelled.Cancelled = true // its end not stored yet
	for _, rec := range []jobRecord{running, cancelled, done} {
		b, _ := json.Marshal(rec)
		f.Add(b)
	}
	f.Add([]byte(`{"v":1}`))
	f.Add([]byte(`{"v":1,"enterprise":"E","owner":"o","kind":"batch","final":{"state":"running"}}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		rec, err := decodeJobRecord(b)
		if err != nil {
			return
		}
		again, err := json.Marshal(rec)
		if err != nil {
			t.Fatalf("a decoded record does not encode: %v", err)
		}
		rec2, err := decodeJobRecord(again)
		if err != nil {
			t.Fatalf("a decoded record, encoded again, is refused: %v", err)
		}
		// Compared encoded: an empty list and none are one record.
		if again2, _ := json.Marshal(rec2); !bytes.Equal(again, again2) {
			t.Fatalf("encoded and decoded again: %s, was %s", again2, again)
		}
	})
}

// FuzzDecodeChunk: a chunk's answer read back at resume is refused with
// an error or decoded into one that encodes to the same bytes; never a
// panic, and never one whose counts do not add up.
func FuzzDecodeChunk(f *testing.F) {
	for _, ca := range []chunkAnswer{
		{Rows: []int{1}, Accepted: 1},
		{Rows: []int{5, 7, 8, 70000}, Accepted: 3, Errors: []RowError{{Row: 7, Number: "1380013800", Reason: "not_whitelisted", Code: "0x00000400", Message: "不在白名单"}}},
	} {
		f.Add(ca.encode())
	}
	f.Add([]byte{chunkVersion, 1, 0, 1})
	f.Fuzz(func(t *testing.T, b []byte) {
		ca, err := decodeChunk(b)
		if err != nil {
			return
		}
		if ca.Accepted+len(ca.Errors) != len(ca.Rows) || len(ca.Rows) == 0 || len(ca.Rows) > BatchChunk {
			t.Fatalf("decoded a chunk that does not add up: %+v", ca)
		}
		again := ca.encode()
		ca2, err := decodeChunk(again)
		if err != nil {
			t.Fatalf("a decoded chunk, encoded again, is refused: %v", err)
		}
		if !bytes.Equal(again, ca2.encode()) {
			t.Fatalf("encoded and decoded again: %x, was %x", ca2.encode(), again)
		}
	})
}
