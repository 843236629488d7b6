package queue

import (
	"errors"
	"reflect"
	"slices"
	"strconv"
	"testing"
	"time"
)

func fullMessage() *Message {
	t0 := time.Date(2026, 11, 25, 8, 0, 0, 123, time.UTC)
	return &Message{
		ID: 42, Account: "alice", Enterprise: "G001", Source: "106571234", Dest: "13712345678",
		SourceTON: 5, SourceNPI: 0, DestTON: 1, DestNPI: 1, DataCoding: 8, Concat: 1, Ref: 513,
		RegisteredDelivery: 1, Upstream: "cmcc-gd", Text: "【某某公司】您好",
		AcceptedAt: t0, SendAt: t0.Add(time.Hour), ValidUntil: t0.Add(48 * time.Hour),
		DLRForwarded: true,
		Parts: []Part{
			{Body: []byte{0, 1, 2}, State: StateDelivered, SMSCID: "0A1B", DueAt: t0, SubmittedAt: t0.Add(time.Second),
				DoneAt: t0.Add(time.Minute), ErrCode: "000", Attempts: 2, DupSMSCIDs: []string{"0A1C"}},
			{State: StateAccepted, DueAt: t0},
		},
	}
}

func TestMessageRoundTrip(t *testing.T) {
	small := msg("a", "1", 1)
	small.Parts[0].State = StateAccepted
	for _, m := range []*Message{fullMessage(), small} {
		b := encodeMessage(nil, m)
		got, err := DecodeMessage(b)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, m) {
			t.Errorf("round trip:\n got %+v\nwant %+v", got, m)
		}
	}
}

func TestDecodeMessageErrors(t *testing.T) {
	good := encodeMessage(nil, fullMessage())
	tests := map[string][]byte{
		"empty":         nil,
		"version":       append([]byte{3}, good[1:]...),
		"trailing":      append(slices.Clone(good), 0),
		"huge length":   {1, 1, 0xff, 0xff, 0xff, 0xff, 0x0f},
		"bad uvarint":   {1, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01},
		"no parts":      encodeMessage(nil, &Message{}),
		"invalid state": mutatePartState(good, 9),
	}
	for i := 1; i < len(good); i += 7 {
		tests["truncated at "+strconv.Itoa(i)] = good[:i]
	}
	for name, b := range tests {
		t.Run(name, func(t *testing.T) {
			if m, err := DecodeMessage(b); !errors.Is(err, ErrCorrupt) {
				t.Errorf("got %+v, %v", m, err)
			}
		})
	}
}

// mutatePartState re-encodes a message with its first part's state forced.
func mutatePartState(b []byte, st uint8) []byte {
	m, _ := DecodeMessage(b)
	m.Parts[0].State = State(st)
	return encodeMessage(nil, m)
}

func TestOrphanAndUsageCodec(t *testing.T) {
	o := &orphan{DLR: DLR{Upstream: "u", SMSCID: "0A", State: StateExpired, ErrCode: "1", DoneAt: time.Unix(5, 0).UTC()}, ReceivedAt: time.Unix(6, 0).UTC()}
	got, err := decodeOrphan(encodeOrphan(nil, o))
	if err != nil || !reflect.DeepEqual(got, o) {
		t.Errorf("orphan: %+v %v", got, err)
	}
	o.State = StateSubmitted
	if _, err := decodeOrphan(encodeOrphan(nil, o)); !errors.Is(err, ErrCorrupt) {
		t.Errorf("orphan with a transient state: %v", err)
	}
	u := usage{Reserved: 3, Charged: 1 << 40}
	if got, err := decodeUsage(encodeUsage(u)); err != nil || got != u {
		t.Errorf("usage: %+v %v", got, err)
	}
	if _, err := decodeUsage([]byte{1, 2}); !errors.Is(err, ErrCorrupt) {
		t.Errorf("short usage: %v", err)
	}
}

// FuzzDecodeMessage: decoding arbitrary bytes never panics, and whatever
// decodes re-encodes to a record that decodes to the same message.
func FuzzDecodeMessage(f *testing.F) {
	f.Add(encodeMessage(nil, fullMessage()))
	small := msg("a", "1", 3)
	for i, st := range []State{StateAccepted, StateSubmitted, StateRejected} {
		small.Parts[i].State = st
	}
	f.Add(encodeMessage(nil, small))
	joined := msg("a", "1", 1)
	joined.Aliases, joined.AliasDLR = []uint64{4, 5}, []uint8{1, 0}
	f.Add(encodeMessage(nil, joined))
	urgent := msg("a", "1", 2)
	urgent.Priority = true
	f.Add(encodeMessage(nil, urgent))
	f.Add([]byte{1})
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := DecodeMessage(b)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("error not ErrCorrupt: %v", err)
			}
			return
		}
		again, err := DecodeMessage(encodeMessage(nil, m))
		if err != nil {
			t.Fatalf("re-encoded record does not decode: %v", err)
		}
		if !reflect.DeepEqual(again, m) {
			t.Fatalf("round trip:\n got %+v\nwant %+v", again, m)
		}
		// The lists' peek at the owner and recipient reads every record that decodes,
		// as it decodes (a priority record's version was once refused).
		if a, e, d, ok := peekHead(b); !ok || string(a) != m.Account || string(e) != m.Enterprise || string(d) != m.Dest {
			t.Fatalf("peekHead: %q, %q, %q, %v; the record's are %q, %q, %q", a, e, d, ok, m.Account, m.Enterprise, m.Dest)
		}
	})
}
