package policy

import "strings"

// province is one of China's 31 mainland province-level divisions, under the
// names the phonenumbers geocoding data uses: zh descriptions start with the
// short name ("广东省东莞市", "北京市", "内蒙古呼和浩特市", "新疆乌鲁木齐市"); en
// descriptions end with the pinyin ("Dongguan, Guangdong", "Beijing").
type province struct{ full, short, pinyin string }

var provinces = [...]province{
	{"北京市", "北京", "Beijing"},
	{"天津市", "天津", "Tianjin"},
	{"上海市", "上海", "Shanghai"},
	{"重庆市", "重庆", "Chongqing"},
	{"河北省", "河北", "Hebei"},
	{"山西省", "山西", "Shanxi"},
	{"辽宁省", "辽宁", "Liaoning"},
	{"吉林省", "吉林", "Jilin"},
	{"黑龙江省", "黑龙江", "Heilongjiang"},
	{"江苏省", "江苏", "Jiangsu"},
	{"浙江省", "浙江", "Zhejiang"},
	{"安徽省", "安徽", "Anhui"},
	{"福建省", "福建", "Fujian"},
	{"江西省", "江西", "Jiangxi"},
	{"山东省", "山东", "Shandong"},
	{"河南省", "河南", "Henan"},
	{"湖北省", "湖北", "Hubei"},
	{"湖南省", "湖南", "Hunan"},
	{"广东省", "广东", "Guangdong"},
	{"海南省", "海南", "Hainan"},
	{"四川省", "四川", "Sichuan"},
	{"贵州省", "贵州", "Guizhou"},
	{"云南省", "云南", "Yunnan"},
	{"陕西省", "陕西", "Shaanxi"},
	{"甘肃省", "甘肃", "Gansu"},
	{"青海省", "青海", "Qinghai"},
	{"内蒙古自治区", "内蒙古", "Inner Mongolia"},
	{"广西壮族自治区", "广西", "Guangxi"},
	{"西藏自治区", "西藏", "Tibet"},
	{"宁夏回族自治区", "宁夏", "Ningxia"},
	{"新疆维吾尔自治区", "新疆", "Xinjiang"},
}

// provinceOfDescription extracts the province from a geocoding description in
// zh ("广东省东莞市" → "广东省") or en ("Dongguan, Guangdong" → "广东省"). The
// result is the official full name; "" when the description names no province
// (the library says just "中国" / "China" for number blocks without location data).
func provinceOfDescription(desc string) string {
	for i := range provinces {
		if strings.HasPrefix(desc, provinces[i].short) {
			return provinces[i].full
		}
	}
	last := desc
	if i := strings.LastIndex(desc, ", "); i >= 0 {
		last = desc[i+2:]
	}
	for i := range provinces {
		if strings.EqualFold(last, provinces[i].pinyin) {
			return provinces[i].full
		}
	}
	return ""
}

// NormalizeProvince maps a province name as an operator may write it in
// configuration ("广东省", "广东", "Guangdong", "guangdong") to the full name
// that Class.Province uses. ok is false for anything else.
func NormalizeProvince(s string) (full string, ok bool) {
	s = strings.TrimSpace(s)
	for i := range provinces {
		p := &provinces[i]
		if s == p.full || s == p.short || strings.EqualFold(s, p.pinyin) {
			return p.full, true
		}
	}
	return "", false
}

// Provinces returns the full names of the 31 mainland province-level divisions.
func Provinces() []string {
	out := make([]string, len(provinces))
	for i := range provinces {
		out[i] = provinces[i].full
	}
	return out
}
