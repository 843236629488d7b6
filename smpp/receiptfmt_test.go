package smpp_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/qxtd/qxtd/smpp"
)

// referenceFormat is Receipt.Format as it was written with fmt and
// time.Format: AppendFormat must give the same text for every receipt.
// Its text: keeps the printable ASCII that GSM 7-bit writes with the same
// codes (the receipt goes under data_coding 0): not $ @ ` [ \ ] ^ _ { | } ~.
func referenceFormat(r smpp.Receipt) string {
	text := []rune(r.Text)
	if len(text) > 20 {
		text = text[:20]
	}
	ascii := make([]byte, 0, len(text))
	for _, c := range text {
		if c >= 0x20 && c < 0x7F && !strings.ContainsRune("$@`[\\]^_{|}~", c) {
			ascii = append(ascii, byte(c))
		}
	}
	errCode := r.Err
	if errCode == "" {
		errCode = "000"
	}
	return fmt.Sprintf("id:%s sub:%03d dlvrd:%03d submit date:%s done date:%s stat:%s err:%s text:%s",
		r.ID, r.Sub, r.Dlvrd, r.SubmitDate.Format("0601021504"), r.DoneDate.Format("0601021504"),
		r.State.Stat(), errCode, ascii)
}

func TestReceiptAppendFormat(t *testing.T) {
	east := time.FixedZone("east", 8*3600)
	west := time.FixedZone("west", -(9*3600 + 30*60))
	for _, r := range []smpp.Receipt{
		{},
		{ID: "1f2e3d", Sub: 1, Dlvrd: 1, State: smpp.StateDelivered, Err: "000", Text: "hello",
			SubmitDate: time.Date(2025, 11, 25, 14, 30, 59, 0, east), DoneDate: time.Date(2025, 11, 25, 14, 31, 0, 0, time.UTC)},
		{ID: "x", Sub: 1000, Dlvrd: -5, State: smpp.MessageState(99), Err: "12345",
			SubmitDate: time.Date(1999, 1, 1, 0, 0, 0, 0, west), DoneDate: time.Date(2100, 12, 31, 23, 59, 59, 999, time.Local)},
		{ID: "y", Sub: 999, Dlvrd: -123, Text: "【某某公司】验证码 1234 is your code, \x00\x7f\x1f tail",
			SubmitDate: time.Date(-3, 5, 6, 7, 8, 9, 0, time.UTC), DoneDate: time.Date(10000, 1, 2, 3, 4, 5, 0, time.UTC)},
		{ID: "z", Text: "\xff\xfe invalid UTF-8 counts per byte, as []rune does", State: smpp.StateRejected},
		{ID: "exactly twenty", Text: "12345678901234567890", State: smpp.StateExpired},
		{ID: "gsm", Text: "a$b@c`d[e\\f]g^h_i{j|k}l~m", State: smpp.StateDelivered},
	} {
		if got, want := r.Format(), referenceFormat(r); got != want {
			t.Errorf("Format(%+v) =\n%q\nwant\n%q", r, got, want)
		}
		if got, want := string(r.AppendFormat([]byte("prefix:"))), "prefix:"+referenceFormat(r); got != want {
			t.Errorf("AppendFormat does not append: %q", got)
		}
	}
}

// FuzzReceiptFormat holds the hand-written formatter to the fmt one for
// any fields, dates (seconds from the epoch, zone offsets) included.
func FuzzReceiptFormat(f *testing.F) {
	f.Add("1f2e3d", 1, 1, int64(1764081059), int64(1764081060), 28800, uint8(2), "000", "hello")
	f.Add("", -7, 1234, int64(-62135596800), int64(253402300800), -34200, uint8(0), "", "【某某公司】验证码 1234")
	f.Fuzz(func(t *testing.T, id string, sub, dlvrd int, submit, done int64, offset int, state uint8, errCode, text string) {
		zone := time.FixedZone("z", offset%(18*3600))
		r := smpp.Receipt{ID: id, Sub: sub, Dlvrd: dlvrd, State: smpp.MessageState(state), Err: errCode, Text: text,
			SubmitDate: time.Unix(submit, 0).In(zone), DoneDate: time.Unix(done, 0).In(zone)}
		if got, want := r.Format(), referenceFormat(r); got != want {
			t.Fatalf("Format(%+v) =\n%q\nwant\n%q", r, got, want)
		}
	})
}

func BenchmarkReceiptFormat(b *testing.B) {
	r := smpp.Receipt{ID: "12345678", Sub: 1, Dlvrd: 1, State: smpp.StateDelivered, Err: "000", Text: "Your code is 123456, valid for 5 minutes",
		SubmitDate: time.Now(), DoneDate: time.Now()}
	b.Run("append", func(b *testing.B) {
		b.ReportAllocs()
		buf := make([]byte, 0, 128)
		for b.Loop() {
			buf = r.AppendFormat(buf[:0])
		}
	})
	b.Run("fmt", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			_ = referenceFormat(r)
		}
	})
}
