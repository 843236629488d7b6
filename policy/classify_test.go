package policy

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"testing"

	"github.com/nyaruka/phonenumbers"
)

// libraryFacts asks phonenumbers directly: every expectation of the tests
// below is checked against it, so a data update that changes a fact fails
// here, loudly, rather than silently changing a scope decision.
func libraryFacts(t *testing.T, number string) (typ phonenumbers.PhoneNumberType, carrier, geo string) {
	t.Helper()
	n, err := phonenumbers.Parse(number, "CN")
	if err != nil {
		t.Fatalf("library cannot parse %q: %v", number, err)
	}
	carrier, _ = phonenumbers.GetCarrierForNumber(n, "zh")
	geo, _ = phonenumbers.GetGeocodingForNumber(n, "zh")
	return phonenumbers.GetNumberType(n), carrier, geo
}

func TestLibraryFacts(t *testing.T) {
	for _, tc := range []struct {
		number  string
		typ     phonenumbers.PhoneNumberType
		carrier string
		geo     string
	}{
		{"13712345678", phonenumbers.MOBILE, "中国移动", "广东省东莞市"},
		{"13923412345", phonenumbers.MOBILE, "中国移动", "广东省深圳市"},
		{"13800138000", phonenumbers.MOBILE, "中国移动", "北京市"},
		{"13916012345", phonenumbers.MOBILE, "中国移动", "上海市"},
		{"19812345678", phonenumbers.MOBILE, "中国移动", "中国"}, // no location data
		{"13012345678", phonenumbers.MOBILE, "中国联通", "重庆市"},
		{"18612345678", phonenumbers.MOBILE, "中国联通", "北京市"},
		{"13312345678", phonenumbers.MOBILE, "中国电信", "贵州省遵义市"},
		{"18912345678", phonenumbers.MOBILE, "中国电信", "江苏省常州市"},
		{"19212345678", phonenumbers.MOBILE, "中国广电", "中国"},
		{"16212345678", phonenumbers.MOBILE, "", "中国"}, // virtual operator block
		{"+86 20 8888 8888", phonenumbers.FIXED_LINE, "", "广东省广州市"},
		{"+1 650 253 0000", phonenumbers.FIXED_LINE_OR_MOBILE, "", "Mountain View, CA"},
		{"123", phonenumbers.UNKNOWN, "", "中国"},
	} {
		typ, carrier, geo := libraryFacts(t, tc.number)
		if typ != tc.typ || carrier != tc.carrier || geo != tc.geo {
			t.Errorf("%s: library says type %v carrier %q geo %q; tests expect %v %q %q",
				tc.number, typ, carrier, geo, tc.typ, tc.carrier, tc.geo)
		}
	}
	if _, err := phonenumbers.Parse("abc", "CN"); err == nil {
		t.Error(`library parses "abc"`)
	}
}

func TestClassifyFormats(t *testing.T) {
	c, err := NewClassifier()
	if err != nil {
		t.Fatal(err)
	}
	for _, in := range []string{
		"13712345678", "+8613712345678", "+86 137 1234 5678", "+86-137-1234-5678",
		"008613712345678", "0086 137 1234 5678", "8613712345678", "(+86) 137.1234.5678",
		"+86 (0) 137 1234 5678", "１３７１２３４５６７８", // national prefix, full-width digits: library path
	} {
		cl, err := c.Classify(in)
		if err != nil {
			t.Errorf("%q: %v", in, err)
			continue
		}
		want := Class{E164: "+8613712345678", National: "13712345678", Region: "CN", Valid: true, Mobile: true,
			Carrier: ChinaMobile, Province: "广东省"}
		if cl != want {
			t.Errorf("%q: got %+v, want %+v", in, cl, want)
		}
	}
	for _, in := range []string{"abc", "", "+", string(make([]byte, 100))} {
		cl, err := c.Classify(in)
		if r, ok := ReasonOf(err); !ok || r != ReasonInvalidNumber {
			t.Errorf("%q: got %+v, %v; want invalid_number", in, cl, err)
		}
	}
}

// The matrix of DOMAIN.md's scope rules: each number against each grant
// combination, home province 广东省.
func TestScopeMatrix(t *testing.T) {
	c, err := NewClassifier(
		Override{Prefix: "13012345678", Carrier: ChinaMobile, Province: "广东省"}, // Chongqing Unicom number ported to Guangdong CMCC (illustrative)
		Override{Prefix: "+86 137 1234 5679", Carrier: ChinaUnicom},            // Guangdong CMCC number ported to Unicom
		Override{Prefix: "1981234", Province: "广东"},                            // a 198 block the data has no province for
	)
	if err != nil {
		t.Fatal(err)
	}
	const (
		ok       = Reason(0)
		national = ReasonScopeNational
		offnet   = ReasonScopeOffNet
		invalid  = ReasonInvalidNumber
	)
	type want struct{ none, nat, off, both Reason }
	for _, tc := range []struct {
		name     string
		number   string
		carrier  Carrier
		province string
		want     want
	}{
		{"in-province CMCC (Dongguan)", "13712345678", ChinaMobile, "广东省", want{ok, ok, ok, ok}},
		{"in-province CMCC (Shenzhen)", "+86 139 2341 2345", ChinaMobile, "广东省", want{ok, ok, ok, ok}},
		{"Beijing CMCC", "13800138000", ChinaMobile, "北京市", want{national, ok, national, ok}},
		{"Shanghai CMCC", "13916012345", ChinaMobile, "上海市", want{national, ok, national, ok}},
		{"CMCC without location data", "19887654321", ChinaMobile, "", want{national, ok, national, ok}},
		{"China Unicom 186", "18612345678", ChinaUnicom, "北京市", want{offnet, offnet, ok, ok}},
		{"China Telecom 133", "13312345678", ChinaTelecom, "贵州省", want{offnet, offnet, ok, ok}},
		{"China Telecom 189", "18912345678", ChinaTelecom, "江苏省", want{offnet, offnet, ok, ok}},
		{"China Broadnet 192", "19212345678", ChinaBroadnet, "", want{offnet, offnet, ok, ok}},
		{"virtual operator 162", "16212345678", CarrierUnknown, "", want{offnet, offnet, ok, ok}},
		{"landline Guangzhou", "+86 20 8888 8888", CarrierUnknown, "", want{invalid, invalid, invalid, invalid}},
		{"landline 020-", "020-88888888", CarrierUnknown, "", want{invalid, invalid, invalid, invalid}},
		{"foreign", "+1 650 253 0000", CarrierUnknown, "", want{invalid, invalid, invalid, invalid}},
		{"malformed abc", "abc", CarrierUnknown, "", want{invalid, invalid, invalid, invalid}},
		{"malformed 123", "123", CarrierUnknown, "", want{invalid, invalid, invalid, invalid}},
		{"unassigned 140 block", "14012345678", CarrierUnknown, "", want{invalid, invalid, invalid, invalid}},
		{"ported Unicom → GD CMCC", "13012345678", ChinaMobile, "广东省", want{ok, ok, ok, ok}},
		{"ported GD CMCC → Unicom", "13712345679", ChinaUnicom, "广东省", want{offnet, offnet, ok, ok}},
		{"block override 1981234", "19812345678", ChinaMobile, "广东省", want{ok, ok, ok, ok}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cl, err := c.Classify(tc.number)
			if err == nil && (cl.Carrier != tc.carrier || cl.Province != tc.province) {
				t.Errorf("class %+v; want carrier %v province %q", cl, tc.carrier, tc.province)
			}
			for _, g := range []struct {
				grants Grants
				want   Reason
			}{
				{Grants{}, tc.want.none},
				{Grants{National: true}, tc.want.nat},
				{Grants{OffNet: true}, tc.want.off},
				{Grants{National: true, OffNet: true}, tc.want.both},
			} {
				got := err
				if got == nil {
					got = ScopeCheck(cl, g.grants, "广东省")
				}
				r, _ := ReasonOf(got)
				if r != g.want || (got == nil) != (g.want == ok) {
					t.Errorf("grants %+v: got %v, want %v", g.grants, got, g.want)
				}
			}
		})
	}
}

// TestPrefixDetermines checks the premise of the classifier's cache: the
// library's answer for a Chinese 11-digit number depends only on its first 7
// digits — by comparing the cached classifier with a straight library
// classification of random numbers (the cache is filled by some, checked by
// others of the same block).
func TestPrefixDetermines(t *testing.T) {
	c, err := NewClassifier()
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	n := 20000
	if testing.Short() || raceEnabled {
		n = 2000
	}
	for i := 0; i < n; i++ {
		// a few blocks hit many times, plus random blocks
		block := 1300000 + rng.IntN(700000)
		if i%2 == 0 {
			block = []int{1371234, 1380013, 1981234, 1621234, 1400000, 1349000, 1740012}[rng.IntN(7)]
		}
		num := fmt.Sprintf("%d%04d", block, rng.IntN(10000))
		got, err := c.Classify(num)
		if err != nil {
			t.Fatalf("%s: %v", num, err)
		}
		// Where the library finds no valid number, it sometimes strips a
		// carrier-selection prefix (179xx) and reports an odd E.164; both
		// sides refuse such numbers, which is all that matters.
		if want := libraryClass(t, num); want.Valid && got != want || !want.Valid && got.Valid {
			t.Fatalf("%s: classifier %+v, library %+v", num, got, want)
		}
	}
}

// libraryClass classifies without the classifier's fast path or cache.
func libraryClass(t *testing.T, number string) Class {
	n, err := phonenumbers.Parse(number, "CN")
	if err != nil {
		t.Fatal(err)
	}
	cl := Class{E164: phonenumbers.Format(n, phonenumbers.E164), National: phonenumbers.GetNationalSignificantNumber(n),
		Region: phonenumbers.GetRegionCodeForNumber(n), Valid: phonenumbers.IsValidNumber(n)}
	if cl.Valid {
		cl.Mobile = phonenumbers.GetNumberType(n) == phonenumbers.MOBILE
		name, _ := phonenumbers.GetCarrierForNumber(n, "zh")
		cl.Carrier = carrierFromLibrary(name)
		desc, _ := phonenumbers.GetGeocodingForNumber(n, "zh")
		cl.Province = provinceOfDescription(desc)
	}
	return cl
}

// TestProvinceOfEveryBlock runs every 7-digit mobile block's zh geocoding
// description through provinceOfDescription: each one must name one of the 31
// provinces, or be the library's "no data" answer 中国.
func TestProvinceOfEveryBlock(t *testing.T) {
	if testing.Short() {
		t.Skip("700,000 lookups")
	}
	seen := map[string]string{}
	cc := int32(86)
	for block := uint64(1300000); block < 2000000; block++ {
		nn := block * 10000
		desc, err := phonenumbers.GetGeocodingForNumber(&phonenumbers.PhoneNumber{CountryCode: &cc, NationalNumber: &nn}, "zh")
		if err != nil {
			t.Fatal(err)
		}
		if _, done := seen[desc]; done {
			continue
		}
		p := provinceOfDescription(desc)
		seen[desc] = p
		if p == "" && desc != "中国" {
			t.Errorf("block %d: %q names no province", block, desc)
		}
	}
	if len(seen) < 300 {
		t.Errorf("only %d distinct descriptions: data changed?", len(seen))
	}
	for desc, want := range map[string]string{
		"广东省东莞市": "广东省", "北京市": "北京市", "内蒙古呼和浩特市": "内蒙古自治区", "新疆乌鲁木齐市": "新疆维吾尔自治区",
		"广西南宁市": "广西壮族自治区", "西藏拉萨市": "西藏自治区", "宁夏银川市": "宁夏回族自治区", "重庆市": "重庆市",
		"山西省太原市": "山西省", "陕西省西安市": "陕西省", "Dongguan, Guangdong": "广东省", "Beijing": "北京市", "中国": "",
	} {
		if got := provinceOfDescription(desc); got != want {
			t.Errorf("provinceOfDescription(%q) = %q, want %q", desc, got, want)
		}
	}
}

func TestNormalizeProvince(t *testing.T) {
	for _, in := range []string{"广东省", "广东", "Guangdong", "guangdong", " 广东省 "} {
		if got, ok := NormalizeProvince(in); !ok || got != "广东省" {
			t.Errorf("%q → %q %v", in, got, ok)
		}
	}
	if _, ok := NormalizeProvince("香港"); ok {
		t.Error("香港 is not one of the 31 mainland provinces")
	}
	if len(Provinces()) != 31 {
		t.Error("want 31 provinces")
	}
}

func TestOverrideValidation(t *testing.T) {
	for _, o := range []Override{
		{Prefix: "12", Carrier: ChinaMobile},          // too short
		{Prefix: "13712345", Carrier: ChinaMobile},    // 8 digits: neither block nor number
		{Prefix: "23712345678", Carrier: ChinaMobile}, // not 1…
		{Prefix: "14012345678", Carrier: ChinaMobile}, // not a valid mobile
		{Prefix: "137"},                       // nothing to override
		{Prefix: "137", Province: "Atlantis"}, // unknown province
		{Prefix: "137", Carrier: Carrier(99)}, // bad carrier
	} {
		if _, err := NewClassifier(o); !errors.Is(err, ErrInvalid) {
			t.Errorf("%+v: got %v, want ErrInvalid", o, err)
		}
	}
	if _, err := NewClassifier(Override{Prefix: "137", Province: "广东"}, Override{Prefix: "+86137", Province: "广东"}); !errors.Is(err, ErrInvalid) {
		t.Errorf("duplicate override: %v", err)
	}
}

func TestParseCarrier(t *testing.T) {
	for c := CarrierUnknown; c < numCarriers; c++ {
		got, ok := ParseCarrier(c.String())
		if !ok || got != c {
			t.Errorf("round trip %v", c)
		}
		b, err := c.MarshalText()
		if err != nil {
			t.Fatal(err)
		}
		var back Carrier
		if err := back.UnmarshalText(b); err != nil || back != c {
			t.Errorf("text round trip %v", c)
		}
	}
	if c, _ := ParseCarrier("中国电信"); c != ChinaTelecom {
		t.Error("中国电信")
	}
}

// Numbers the benchmarks use: canonical, and as people type them.
var benchNumbers = []string{"+8613712345678", "137 1234 5678"}

func BenchmarkPhonenumbersParse(b *testing.B) {
	for _, num := range benchNumbers {
		b.Run(strconv.Quote(num), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := phonenumbers.Parse(num, "CN"); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkPhonenumbersFull is what classification costs with the library
// alone: parse, type, carrier, geocoding.
func BenchmarkPhonenumbersFull(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		n, _ := phonenumbers.Parse(benchNumbers[0], "CN")
		phonenumbers.GetNumberType(n)
		phonenumbers.GetCarrierForNumber(n, "zh")
		phonenumbers.GetGeocodingForNumber(n, "zh")
	}
}

func BenchmarkClassify(b *testing.B) {
	c, err := NewClassifier()
	if err != nil {
		b.Fatal(err)
	}
	for _, num := range append(benchNumbers, "+86 20 8888 8888") {
		b.Run(strconv.Quote(num), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := c.Classify(num); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
