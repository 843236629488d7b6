package segment

import (
	"fmt"
	"strings"
	"testing"
	"unicode/utf8"
)

// allOptions lists every concat mode, packed and unpacked.
func allOptions() []Options {
	var out []Options
	for c := ConcatUDH8; c <= ConcatPayload; c++ {
		out = append(out, Options{Concat: c}, Options{Concat: c, GSMPacked: true})
	}
	return out
}

func optName(o Options) string {
	if o.GSMPacked {
		return o.Concat.String() + "_packed"
	}
	return o.Concat.String()
}

// userDataBits is how many bits of the 140-octet user data a frame uses,
// counting unpacked GSM as the SMSC will send it (packed after the UDH).
func userDataBits(f Frame, packed bool) int {
	if f.DataCoding != DataCodingGSM7 || packed {
		return 8 * len(f.ShortMessage)
	}
	udh := 0
	if f.ESMClass&ESMClassUDHI != 0 {
		udh = int(f.ShortMessage[0]) + 1
	}
	return 8*udh + packFill(udh) + 7*(len(f.ShortMessage)-udh)
}

// lostTrailingCR reports whether got is want without its final CR because
// of the documented packed-GSM ambiguity: the last frame's septets exactly
// fill its last octet and the last septet is a CR.
func lostTrailingCR(p *Plan, frames []Frame, opt Options, want, got string) bool {
	if !opt.GSMPacked || p.Coding != GSM7 || !strings.HasSuffix(want, "\r") || got != want[:len(want)-1] {
		return false
	}
	last := p.Parts[len(p.Parts)-1]
	if opt.Concat == ConcatPayload {
		last = nil
		for _, part := range p.Parts {
			last = append(last, part...)
		}
	}
	fill := 0
	if f := frames[len(frames)-1]; f.ESMClass&ESMClassUDHI != 0 {
		fill = packFill(int(f.ShortMessage[0]) + 1)
	}
	return (fill+7*len(last))%8 == 0
}

// roundTrip encodes text with opt, frames it and checks every invariant
// the package promises; it returns the plan and frames for more checks.
func roundTrip(t testing.TB, text string, opt Options, ref uint16) (*Plan, []Frame) {
	t.Helper()
	p, err := Encode(text, opt)
	if err != nil {
		t.Fatalf("Encode(%q, %+v): %v", text, opt, err)
	}
	if err := checkPlan(text, opt, ref, p); err != nil {
		t.Fatal(err)
	}
	frames, err := BuildFrames(p.DataCoding, p.Parts, ref, opt)
	if err != nil {
		t.Fatalf("BuildFrames: %v", err)
	}
	if err := checkFrames(text, opt, p, frames); err != nil {
		t.Fatal(err)
	}
	return p, frames
}

func checkPlan(text string, opt Options, ref uint16, p *Plan) error {
	n, err := Count(text, opt)
	if err != nil || n != p.Segments() {
		return fmt.Errorf("Count = %d, %v; Plan.Segments = %d", n, err, p.Segments())
	}
	if p.Chars != utf8.RuneCountInString(text) {
		return fmt.Errorf("Chars = %d, want %d", p.Chars, utf8.RuneCountInString(text))
	}
	if opt.Concat != ConcatPayload && len(p.Parts) != p.Segments() {
		return fmt.Errorf("%d parts, %d segments", len(p.Parts), p.Segments())
	}
	for i, part := range p.Parts {
		if len(part) == 0 {
			return fmt.Errorf("part %d empty", i)
		}
		switch p.Coding {
		case GSM7:
			if part[len(part)-1] == gsmEscape {
				return fmt.Errorf("part %d ends with an escape", i)
			}
		case UCS2:
			if len(part)%2 != 0 {
				return fmt.Errorf("part %d has odd length", i)
			}
			if hi := part[len(part)-2]; hi >= 0xD8 && hi <= 0xDB {
				return fmt.Errorf("part %d ends with a high surrogate", i)
			}
		}
	}
	return nil
}

func checkFrames(text string, opt Options, p *Plan, frames []Frame) error {
	if opt.Concat == ConcatPayload {
		if len(frames) != 1 || len(frames[0].ShortMessage) != 0 || frames[0].TLVs[TagMessagePayload] == nil {
			return fmt.Errorf("payload mode: want one frame with message_payload, got %+v", frames)
		}
	} else {
		if len(frames) != p.Segments() {
			return fmt.Errorf("%d frames, %d segments", len(frames), p.Segments())
		}
		for i, f := range frames {
			if bits := userDataBits(f, opt.GSMPacked); bits > 1120 {
				return fmt.Errorf("frame %d uses %d bits of user data, more than 140 octets", i, bits)
			}
			if len(frames) == 1 && (f.ESMClass != 0 || f.TLVs != nil) {
				return fmt.Errorf("single frame has UDH or TLVs: %+v", f)
			}
		}
	}
	got, err := Reassemble(frames, opt)
	if err != nil {
		return fmt.Errorf("Reassemble: %v", err)
	}
	if got != text && !lostTrailingCR(p, frames, opt, text, got) {
		return fmt.Errorf("Reassemble = %q, want %q", got, text)
	}
	return nil
}
