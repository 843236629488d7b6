package segment

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite segment/testdata/golden/*.json")

// goldenRef is the reference number of every golden vector: distinct high
// and low octets, so 8-bit mode visibly uses the low one.
const goldenRef = 0xA5C3

type goldenCase struct {
	Name          string `json:"name"`
	Text          string `json:"text"`
	EnterpriseSig string `json:"enterprise_sig,omitempty"`
	UserSig       string `json:"user_sig,omitempty"`
}

type goldenFrame struct {
	ESMClass     string            `json:"esm_class"`
	DataCoding   string            `json:"data_coding"`
	ShortMessage string            `json:"short_message"`
	TLVs         map[string]string `json:"tlvs,omitempty"`
}

type goldenResult struct {
	Options    string        `json:"options"`
	Error      string        `json:"error,omitempty"`
	DataCoding string        `json:"data_coding,omitempty"`
	Chars      int           `json:"chars,omitempty"`
	Units      int           `json:"units,omitempty"`
	Segments   int           `json:"segments,omitempty"`
	Frames     []goldenFrame `json:"frames,omitempty"`
}

type goldenFile struct {
	goldenCase
	Ref     uint16         `json:"ref"`
	Results []goldenResult `json:"results"`
}

func goldenCases() []goldenCase {
	cases := []goldenCase{
		{Name: "ascii_short", Text: "Hello, world!"},
		{Name: "ascii_160", Text: rep("0123456789", 16)},
		{Name: "ascii_161", Text: rep("0123456789", 16) + "X"},
		{Name: "ascii_306", Text: rep("abcdefghijklmnopq", 18)},
		{Name: "ascii_307", Text: rep("abcdefghijklmnopq", 18) + "Z"},
		{Name: "gsm_extension", Text: "Price 5€ [a] {b} ~c~ ^d| \\e\fend"},
		{Name: "gsm_escape_at_153", Text: rep("a", 152) + "€" + rep("b", 20)},
		{Name: "gsm_escape_at_152_udh16", Text: rep("a", 151) + "[" + rep("b", 20)},
		{Name: "gsm_cr_at_153", Text: rep("a", 152) + "\r" + rep("b", 20)},
		{Name: "gsm_cr_at_152", Text: rep("a", 151) + "\r" + rep("b", 20)},
		{Name: "gsm_7_septets_padding", Text: "1234567"},
		{Name: "chinese_short", Text: "您的验证码是123456，请在5分钟内输入。"},
		{Name: "chinese_short_signed", Text: "您的验证码是123456，请在5分钟内输入。", EnterpriseSig: sig, UserSig: "—张三"},
		{Name: "chinese_70", Text: rep("短信", 35)},
		{Name: "chinese_71", Text: rep("短信", 35) + "。"},
		{Name: "chinese_70_signed", Text: rep("测", 64), EnterpriseSig: sig},
		{Name: "chinese_71_signed", Text: rep("测", 63), EnterpriseSig: sig, UserSig: "—张三"},
		{Name: "chinese_134", Text: rep("长短信拆分", 26) + "结尾"},
		{Name: "chinese_135", Text: rep("长短信拆分", 27)},
		{Name: "chinese_500", Text: rep("企信通", 166) + "完毕"},
		{Name: "chinese_500_signed", Text: rep("企信通", 164) + "完毕" + "，", EnterpriseSig: sig, UserSig: "—李"},
		{Name: "chinese_501", Text: rep("企信通", 167)},
		{Name: "chinese_501_signed", Text: rep("企信通", 165), EnterpriseSig: sig},
		{Name: "gsm_500", Text: rep("Hello ", 83) + "!!"},
		{Name: "gsm_501", Text: rep("Hello ", 83) + "!!!"},
		{Name: "mixed", Text: "订单 #12345 已发货, total €99.50 [express] 😀 谢谢!", EnterpriseSig: sig},
		{Name: "empty", Text: ""},
	}
	// An emoji starting at UTF-16 unit 66, 67 and 68 of a UCS-2 text.
	for _, pos := range []int{66, 67, 68} {
		cases = append(cases, goldenCase{
			Name: fmt.Sprintf("emoji_at_%d", pos),
			Text: rep(han, pos-1) + emoji + rep("文", 20),
		})
	}
	return cases
}

func frameHex(frames []Frame) string {
	b, _ := json.Marshal(toGoldenFrames(frames))
	return string(b)
}

func toGoldenFrames(frames []Frame) []goldenFrame {
	out := make([]goldenFrame, len(frames))
	for i, f := range frames {
		g := goldenFrame{
			ESMClass:     fmt.Sprintf("0x%02x", f.ESMClass),
			DataCoding:   fmt.Sprintf("0x%02x", f.DataCoding),
			ShortMessage: hex.EncodeToString(f.ShortMessage),
		}
		if len(f.TLVs) > 0 {
			g.TLVs = map[string]string{}
			for tag, v := range f.TLVs {
				g.TLVs[fmt.Sprintf("0x%04x", tag)] = hex.EncodeToString(v)
			}
		}
		out[i] = g
	}
	return out
}

func goldenResults(t *testing.T, c goldenCase) []goldenResult {
	text := Sign(c.Text, c.EnterpriseSig, c.UserSig)
	var out []goldenResult
	for _, o := range allOptions() {
		r := goldenResult{Options: optName(o)}
		p, err := Encode(text, o)
		if err != nil {
			r.Error = err.Error()
			out = append(out, r)
			continue
		}
		if o.GSMPacked && p.Coding != GSM7 {
			continue // packing only applies to GSM
		}
		frames, err := BuildFrames(p.DataCoding, p.Parts, goldenRef, o)
		if err != nil {
			t.Fatalf("%s %s: BuildFrames: %v", c.Name, r.Options, err)
		}
		// Every vector must also decode back through the independent path.
		if err := checkPlan(text, o, goldenRef, p); err != nil {
			t.Errorf("%s %s: %v", c.Name, r.Options, err)
		}
		if err := checkFrames(text, o, p, frames); err != nil {
			t.Errorf("%s %s: %v", c.Name, r.Options, err)
		}
		r.DataCoding = fmt.Sprintf("0x%02x", p.DataCoding)
		r.Chars, r.Units, r.Segments = p.Chars, p.Units, p.Segments()
		r.Frames = toGoldenFrames(frames)
		out = append(out, r)
	}
	return out
}

func TestGolden(t *testing.T) {
	dir := filepath.Join("testdata", "golden")
	var names []string
	for _, c := range goldenCases() {
		t.Run(c.Name, func(t *testing.T) {
			got := goldenFile{goldenCase: c, Ref: goldenRef, Results: goldenResults(t, c)}
			b, err := json.MarshalIndent(got, "", "  ")
			if err != nil {
				t.Fatal(err)
			}
			b = append(b, '\n')
			path := filepath.Join(dir, c.Name+".json")
			names = append(names, c.Name+".json")
			if *update {
				if err := os.MkdirAll(dir, 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(path, b, 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run go test ./segment -run TestGolden -update)", err)
			}
			if !bytes.Equal(want, b) {
				t.Errorf("%s differs from the golden file:\n%s", path, firstDiff(string(want), string(b)))
			}
		})
	}
	// No stale golden files.
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if !slices.Contains(names, e.Name()) {
			t.Errorf("stale golden file %s", e.Name())
		}
	}
}

func firstDiff(want, got string) string {
	wl, gl := strings.Split(want, "\n"), strings.Split(got, "\n")
	for i := 0; i < len(wl) || i < len(gl); i++ {
		var w, g string
		if i < len(wl) {
			w = wl[i]
		}
		if i < len(gl) {
			g = gl[i]
		}
		if w != g {
			return fmt.Sprintf("line %d:\nwant %s\n got %s", i+1, w, g)
		}
	}
	return ""
}
