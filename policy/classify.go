package policy

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/nyaruka/phonenumbers"
)

// Carrier is the mobile network a number belongs to.
type Carrier uint8

// Carriers. CarrierUnknown is a valid Chinese mobile number whose carrier the
// data does not name (virtual-operator blocks 162/165, satellite 1349, …): it is
// treated as off-net.
const (
	CarrierUnknown Carrier = iota
	ChinaMobile
	ChinaUnicom
	ChinaTelecom
	ChinaBroadnet
	numCarriers
)

var carrierNames = [numCarriers]string{"unknown", "china_mobile", "china_unicom", "china_telecom", "china_broadnet"}

// carrierZH names the carriers in the consoles' refusal details.
var carrierZH = [numCarriers]string{"运营商未知的", "中国移动", "中国联通", "中国电信", "中国广电"}

// ZH is the carrier's Chinese name as refusal details put it before 号码
// (中国联通号码; unknown: 运营商未知的号码).
func (c Carrier) ZH() string {
	if c < numCarriers {
		return carrierZH[c]
	}
	return carrierZH[0]
}

// String returns the stable name ("china_mobile", …), usable as a metric label.
func (c Carrier) String() string {
	if c >= numCarriers {
		return "invalid"
	}
	return carrierNames[c]
}

// ParseCarrier accepts the stable names, the library's zh and en names
// ("中国移动", "China Mobile") and the usual abbreviations (cmcc, cucc, ctcc, cbn).
func ParseCarrier(s string) (Carrier, bool) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "unknown":
		return CarrierUnknown, true
	case "china_mobile", "中国移动", "china mobile", "cmcc", "mobile":
		return ChinaMobile, true
	case "china_unicom", "中国联通", "china unicom", "cucc", "unicom":
		return ChinaUnicom, true
	case "china_telecom", "中国电信", "china telecom", "ctcc", "telecom":
		return ChinaTelecom, true
	case "china_broadnet", "中国广电", "china broadnet", "cbn", "broadnet":
		return ChinaBroadnet, true
	}
	return 0, false
}

// MarshalText implements encoding.TextMarshaler.
func (c Carrier) MarshalText() ([]byte, error) {
	if c >= numCarriers {
		return nil, fmt.Errorf("%w: carrier %d", ErrInvalid, uint8(c))
	}
	return []byte(c.String()), nil
}

// UnmarshalText implements encoding.TextUnmarshaler.
func (c *Carrier) UnmarshalText(b []byte) error {
	v, ok := ParseCarrier(string(b))
	if !ok {
		return invalidField("carrier", "运营商须为 china_mobile、china_unicom、china_telecom 或 china_broadnet（也可填中文名，如中国移动）", "unknown carrier %q", b)
	}
	*c = v
	return nil
}

// carrierFromLibrary maps phonenumbers' carrier names (zh data, en fallback).
func carrierFromLibrary(name string) Carrier {
	switch name {
	case "中国移动", "China Mobile":
		return ChinaMobile
	case "中国联通", "China Unicom":
		return ChinaUnicom
	case "中国电信", "China Telecom":
		return ChinaTelecom
	case "中国广电", "China Broadnet":
		return ChinaBroadnet
	}
	return CarrierUnknown
}

// Class is what the classifier knows about one number.
type Class struct {
	E164     string  // "+8613712345678"; "" when the input is not a phone number
	National string  // national significant number, "13712345678"
	Region   string  // ISO 3166 region of the number, "CN", "US"; "" if unknown
	Valid    bool    // a valid number of Region (any type)
	Mobile   bool    // a valid mobile number (of any region: see ScopeCheck)
	Carrier  Carrier // Chinese mobile numbers only
	Province string  // full province name, "广东省", of Chinese mobile numbers; "" if unknown
	Override bool    // an operator override decided Carrier or Province
}

// Grants are the operator's scope grants of an enterprise.
type Grants struct {
	National bool // 全网发送: China Mobile numbers of every province
	OffNet   bool // 外网发送: other carriers' numbers
}

// ScopeCheck decides whether an enterprise with grants g, in home province
// home, may send to c:
//   - not a valid Chinese mobile number (malformed, landline, service number,
//     foreign) → invalid_number;
//   - China Mobile of the home province → allowed;
//   - China Mobile elsewhere, or of unknown province → needs National
//     (scope_national): without location data we cannot prove it is local;
//   - any other carrier, including CarrierUnknown → needs OffNet (scope_offnet).
func ScopeCheck(c Class, g Grants, home string) error {
	if !c.Mobile || c.Region != "CN" {
		return c.invalidNumber()
	}
	if c.Carrier == ChinaMobile {
		if c.Province != "" && c.Province == home || g.National {
			return nil
		}
		where, whereZH := c.Province, c.Province
		if where == "" {
			where, whereZH = "unknown province", "归属地未知"
		}
		return refuseZH(ReasonScopeNational, c.E164+": China Mobile, "+where, c.E164+"：中国移动，"+whereZH+"，不是本省号码")
	}
	if g.OffNet {
		return nil
	}
	return refuseZH(ReasonScopeOffNet, c.E164+": "+c.Carrier.String(), c.E164+"："+carrierZH[c.Carrier]+"号码")
}

// invalidNumber is the invalid_number refusal of c: why it is not a
// Chinese mobile number, in English and in Chinese.
func (c Class) invalidNumber() error {
	en, zh := c.invalidDetail()
	return refuseZH(ReasonInvalidNumber, en, zh)
}

func (c Class) invalidDetail() (en, zh string) {
	switch {
	case c.E164 == "":
		return "not a phone number", "不是电话号码"
	case c.Region != "CN" && c.Valid:
		return c.E164 + ": foreign number (" + c.Region + ")", c.E164 + "：境外号码（" + c.Region + "）"
	case c.Region != "CN":
		return c.E164 + ": not a valid number", c.E164 + "：不是有效的号码"
	case c.Valid:
		return c.E164 + ": not a mobile number", c.E164 + "：不是手机号码"
	default:
		return c.E164 + ": not a valid Chinese number", c.E164 + "：不是有效的中国号码"
	}
}

// Override is an operator correction for ported numbers (携号转网) or number
// blocks the library knows badly. Prefix is national digits: a full 11-digit
// mobile number, or a number block (号段) of 3 to 7 digits starting with 1. The
// zero Carrier and "" Province keep the library's value; at least one must be
// set. A full-number override wins over a block; a longer block over a shorter.
// Porting in China is within a province, so a ported number usually needs only
// Carrier.
type Override struct {
	Prefix   string  `json:"prefix"`
	Carrier  Carrier `json:"carrier,omitempty"`
	Province string  `json:"province,omitempty"`
}

// normalizePrefix returns the national digits of an override prefix.
func normalizePrefix(prefix string) (string, error) {
	p := strings.Map(func(r rune) rune {
		if r == ' ' || r == '-' {
			return -1
		}
		return r
	}, prefix)
	p = strings.TrimPrefix(p, "+86")
	if len(p) == 13 && strings.HasPrefix(p, "86") {
		p = p[2:]
	}
	if !allDigits(p) || p == "" || p[0] != '1' || !(len(p) == 11 || len(p) >= 3 && len(p) <= 7) {
		return "", invalidField("prefix", "号段须为 11 位手机号码，或以 1 开头的 3–7 位号段", "override prefix %q: want an 11-digit mobile number or a 3–7 digit block starting with 1", prefix)
	}
	return p, nil
}

func (o Override) normalize() (Override, error) {
	p, err := normalizePrefix(o.Prefix)
	if err != nil {
		return o, err
	}
	o.Prefix = p
	if o.Carrier >= numCarriers {
		return o, invalidField("carrier", "运营商须为中国移动、中国联通、中国电信或中国广电", "override %s: carrier %d", p, uint8(o.Carrier))
	}
	if o.Province != "" {
		full, ok := NormalizeProvince(o.Province)
		if !ok {
			return o, invalidField("province", fmt.Sprintf("没有这个省份：%q（如 广东、广东省）", o.Province), "override %s: unknown province %q", p, o.Province)
		}
		o.Province = full
	}
	if o.Carrier == CarrierUnknown && o.Province == "" {
		return o, fmt.Errorf("%w: override %s: neither carrier nor province set", ErrInvalid, p)
	}
	if len(p) == 11 {
		if info := computePrefix(mustUint(p), nil); !info.mobile {
			return o, fmt.Errorf("%w: override %s: not a valid mobile number", ErrInvalid, p)
		}
	}
	return o, nil
}

func allDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

func mustUint(s string) uint64 {
	v, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		panic(err)
	}
	return v
}

// Classifier normalises and classifies numbers. It is safe for concurrent use.
//
// Speed: a Chinese mobile number's validity, carrier and province depend only on
// its first 7 digits (the CN mobile pattern constrains at most 5 digits, carrier
// data 4, geocoding data 7: checked by TestPrefixDetermines). So the result of
// the library is cached per 7-digit block, never per number: at most 10^6
// entries (80 KB per used 3-digit range, about 4 MB with every range in use),
// each an interned pointer. A plain "+86…"/"1…" number is then classified
// without the library's parser (regular expressions, ~10 µs) and without
// allocating when it is already in E.164. Everything else (landlines, foreign,
// odd formats) goes through phonenumbers.Parse, uncached.
type Classifier struct {
	st atomic.Pointer[clsState]

	mu     sync.Mutex // guards intern and serialises SetOverrides
	intern map[prefixInfo]*prefixInfo
}

type clsState struct {
	numbers  map[string]Override // 11-digit national → override
	prefixes map[string]Override // 3–7 digit block → override
	list     []Override          // sorted by Prefix
	cache    [100]atomic.Pointer[prefixBlock]
}

// prefixBlock caches 10^4 7-digit blocks 1AB0000–1AB9999.
type prefixBlock [10000]atomic.Pointer[prefixInfo]

type prefixInfo struct {
	valid    bool
	mobile   bool
	override bool
	carrier  Carrier
	province string
}

// NewClassifier returns a classifier with the given overrides (see SetOverrides).
func NewClassifier(overrides ...Override) (*Classifier, error) {
	c := &Classifier{intern: make(map[prefixInfo]*prefixInfo)}
	if err := c.SetOverrides(overrides); err != nil {
		return nil, err
	}
	// Load the library's carrier and geocoding data now, not on the first submit.
	if _, err := c.Classify("13800138000"); err != nil {
		return nil, err
	}
	return c, nil
}

// SetOverrides replaces the override list atomically (and resets the block
// cache). A Store attached to this classifier owns the list: it calls this on
// open and after each override change.
func (c *Classifier) SetOverrides(ovs []Override) error {
	st := &clsState{numbers: map[string]Override{}, prefixes: map[string]Override{}}
	for _, o := range ovs {
		n, err := o.normalize()
		if err != nil {
			return err
		}
		m := st.prefixes
		if len(n.Prefix) == 11 {
			m = st.numbers
		}
		if _, dup := m[n.Prefix]; dup {
			return fmt.Errorf("%w: override %s listed twice", ErrInvalid, n.Prefix)
		}
		m[n.Prefix] = n
		st.list = append(st.list, n)
	}
	slices.SortFunc(st.list, func(a, b Override) int { return strings.Compare(a.Prefix, b.Prefix) })
	c.mu.Lock()
	c.st.Store(st)
	c.mu.Unlock()
	return nil
}

// Overrides returns the current override list, sorted by prefix.
func (c *Classifier) Overrides() []Override { return slices.Clone(c.st.Load().list) }

// maxInput bounds what we look at: SMPP destination_addr is at most 20 octets.
const maxInput = 64

// Classify normalises number — with or without +86 / 0086 / 86, with spaces,
// dashes, dots or parentheses — and classifies it. The error is non-nil (a
// *Refusal with ReasonInvalidNumber) only when the input is not a phone number
// at all; a landline, a foreign or an invalid number is a Class with Mobile
// false, which ScopeCheck refuses.
func (c *Classifier) Classify(number string) (Class, error) {
	if len(number) > maxInput {
		return Class{}, refuseZH(ReasonInvalidNumber, "not a phone number: too long", "不是电话号码：位数太多")
	}
	st := c.st.Load()
	var buf [16]byte
	if d, ok := fastDigits(number, &buf); ok {
		var e164 string
		if len(number) == 14 && number[0] == '+' && number[1] == '8' && number[2] == '6' && number[3:] == string(d) {
			e164 = number // already canonical: no allocation
		} else {
			var b [14]byte
			copy(b[:], "+86")
			copy(b[3:], d)
			e164 = string(b[:])
		}
		return c.mobileClass(st, e164), nil
	}
	return c.slowClassify(st, number)
}

// fastDigits returns the 11 national digits of a plain Chinese mobile number
// ("13712345678", "+86 137-1234-5678", "008613712345678", "8613712345678").
func fastDigits(s string, buf *[16]byte) ([]byte, bool) {
	n, plus := 0, false
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c >= '0' && c <= '9':
			if n == len(buf) {
				return nil, false
			}
			buf[n] = c
			n++
		case c == '+':
			if n != 0 || plus {
				return nil, false
			}
			plus = true
		case c == ' ' || c == '-' || c == '(' || c == ')' || c == '.' || c == '\t':
		default:
			return nil, false
		}
	}
	d := buf[:n]
	switch {
	case plus:
		if n != 13 || d[0] != '8' || d[1] != '6' {
			return nil, false
		}
		d = d[2:]
	case n == 15 && string(d[:4]) == "0086":
		d = d[4:]
	case n == 13 && d[0] == '8' && d[1] == '6':
		d = d[2:]
	}
	if len(d) != 11 || d[0] != '1' {
		return nil, false
	}
	return d, true
}

// mobileClass classifies "+861xxxxxxxxxx" (11 national digits starting with 1).
func (c *Classifier) mobileClass(st *clsState, e164 string) Class {
	nat := e164[3:]
	info := c.lookup(st, nat)
	cl := Class{
		E164:     e164,
		National: nat,
		Region:   "CN",
		Valid:    info.valid,
		Mobile:   info.mobile,
		Carrier:  info.carrier,
		Province: info.province,
		Override: info.override,
	}
	if len(st.numbers) != 0 && info.mobile {
		if o, ok := st.numbers[nat]; ok {
			if o.Carrier != CarrierUnknown {
				cl.Carrier = o.Carrier
			}
			if o.Province != "" {
				cl.Province = o.Province
			}
			cl.Override = true
		}
	}
	return cl
}

func (c *Classifier) lookup(st *clsState, nat string) *prefixInfo {
	var p uint64 // the 7-digit block, 1000000–1999999
	for i := 0; i < 7; i++ {
		p = p*10 + uint64(nat[i]-'0')
	}
	top := &st.cache[p/10000-100]
	blk := top.Load()
	if blk == nil {
		blk = new(prefixBlock)
		if !top.CompareAndSwap(nil, blk) {
			blk = top.Load()
		}
	}
	slot := &blk[p%10000]
	if info := slot.Load(); info != nil {
		return info
	}
	info := computePrefix(p*10000, st.prefixes)
	c.mu.Lock()
	if in, ok := c.intern[info]; ok {
		c.mu.Unlock()
		slot.Store(in)
		return in
	}
	ip := &info
	c.intern[info] = ip
	c.mu.Unlock()
	slot.Store(ip)
	return ip
}

// computePrefix asks the library about a Chinese national number and applies
// the longest matching block override.
func computePrefix(national uint64, blocks map[string]Override) prefixInfo {
	cc := int32(86)
	num := &phonenumbers.PhoneNumber{CountryCode: &cc, NationalNumber: &national}
	typ := phonenumbers.GetNumberType(num)
	var info prefixInfo
	info.valid = typ != phonenumbers.UNKNOWN
	if !info.valid {
		return info
	}
	name, _ := phonenumbers.GetCarrierForNumber(num, "zh")
	info.carrier = carrierFromLibrary(name)
	desc, _ := phonenumbers.GetGeocodingForNumber(num, "zh")
	info.province = provinceOfDescription(desc)
	// MOBILE only. For CN the library never answers FIXED_LINE_OR_MOBILE (the
	// fixed-line and mobile patterns are disjoint); should a future data
	// release do so, we accept it only where the carrier data names a mobile
	// network, since we can neither deliver nor bill to a landline.
	info.mobile = typ == phonenumbers.MOBILE ||
		typ == phonenumbers.FIXED_LINE_OR_MOBILE && info.carrier != CarrierUnknown
	if info.mobile && len(blocks) != 0 {
		s := strconv.FormatUint(national, 10)
		for l := 7; l >= 3; l-- {
			if o, ok := blocks[s[:l]]; ok {
				if o.Carrier != CarrierUnknown {
					info.carrier = o.Carrier
				}
				if o.Province != "" {
					info.province = o.Province
				}
				info.override = true
				break
			}
		}
	}
	return info
}

func (c *Classifier) slowClassify(st *clsState, number string) (Class, error) {
	num, err := phonenumbers.Parse(number, "CN")
	if err != nil {
		return Class{}, refuseZH(ReasonInvalidNumber, "not a phone number: "+strconv.Quote(number), "不是电话号码："+strconv.Quote(number))
	}
	nsn := phonenumbers.GetNationalSignificantNumber(num)
	if num.GetCountryCode() == 86 && len(nsn) == 11 && nsn[0] == '1' && allDigits(nsn) {
		return c.mobileClass(st, "+86"+nsn), nil
	}
	// Not a Chinese mobile number: refused whatever it is, so only what the
	// refusal's detail needs (no carrier or province lookups).
	typ := phonenumbers.GetNumberType(num)
	return Class{
		E164:     phonenumbers.Format(num, phonenumbers.E164),
		National: nsn,
		Region:   phonenumbers.GetRegionCodeForNumber(num),
		Valid:    typ != phonenumbers.UNKNOWN,
		Mobile:   typ == phonenumbers.MOBILE || typ == phonenumbers.FIXED_LINE_OR_MOBILE,
	}, nil
}

// normalizeMobile returns the E.164 form of a valid Chinese mobile number, or
// an invalid_number refusal (for whitelist entries and registered mobiles).
func (c *Classifier) normalizeMobile(number string) (string, error) {
	cl, err := c.Classify(number)
	if err != nil {
		return "", err
	}
	if !cl.Mobile || cl.Region != "CN" {
		return "", cl.invalidNumber()
	}
	return cl.E164, nil
}
