package smpp

import "testing"

// Every per-address limit counts an IPv6 peer by its /64 (a host may have
// 2^64 addresses), an IPv4 one by its address, whether the socket was
// dual-stack or not.
func TestSourceKey(t *testing.T) {
	for in, want := range map[string]string{
		"192.0.2.7:2775":                "192.0.2.7",
		"192.0.2.7":                     "192.0.2.7",
		"[::ffff:192.0.2.7]:40000":      "192.0.2.7",
		"[2001:db8:1:2:aaaa::1]:40000":  "2001:db8:1:2::/64",
		"[2001:db8:1:2:ffff:ffff::9]:1": "2001:db8:1:2::/64",
		"2001:db8:1:3::1":               "2001:db8:1:3::/64",
		"[fe80::1%eth0]:2775":           "fe80::/64",
		"[::1]:8080":                    "::/64",
		"@":                             "@", // a unix socket's or a test's address: its own key
		"not-an-ip:99":                  "not-an-ip",
	} {
		if got := SourceKey(in); got != want {
			t.Errorf("SourceKey(%q) = %q, want %q", in, got, want)
		}
	}
}

// The limits that hold a source spread over many addresses count an IPv4
// peer by its /24 and an IPv6 one by its /48, whatever the socket; what is
// no address is counted under itself, as SourceKey counts it.
func TestSourcePrefix(t *testing.T) {
	for in, want := range map[string]string{
		"192.0.2.7:2775":                  "192.0.2.0/24",
		"192.0.2.255":                     "192.0.2.0/24",
		"192.0.3.1:1":                     "192.0.3.0/24",
		"[::ffff:192.0.2.7]:40000":        "192.0.2.0/24", // IPv4 on a dual-stack socket
		"::ffff:192.0.2.7":                "192.0.2.0/24",
		"[2001:db8:1:2:aaaa::1]:40000":    "2001:db8:1::/48",
		"[2001:db8:1:ffff:ffff::9]:1":     "2001:db8:1::/48",
		"2001:db8:2::1":                   "2001:db8:2::/48",
		"[fe80::1%eth0]:2775":             "fe80::/48",
		"fe80::1%eth0":                    "fe80::/48",
		"[::1]:8080":                      "::/48",
		"127.0.0.1:8080":                  "127.0.0.0/24",
		"0.0.0.0:0":                       "0.0.0.0/24",
		"@":                               "@", // a unix socket's or a test's address
		"":                                "",
		"not-an-ip:99":                    "not-an-ip",
		"[not-an-ip]:99":                  "not-an-ip",
		"192.0.2.7:2775:1":                "192.0.2.7:2775:1",
		"300.0.0.1:1":                     "300.0.0.1",
		"[2001:db8::1%]:1":                "2001:db8::1%",
		"[2001:db8:1:2:3:4:5:6:7]:1":      "2001:db8:1:2:3:4:5:6:7",
		"\xff\xfe:1":                      "\xff\xfe",
		"[::ffff:192.0.2.7%eth0]:40000":   "192.0.2.0/24",
		"[2001:db8:abcd:12::1%25eth0]:80": "2001:db8:abcd::/48",
	} {
		if got := SourcePrefix(in); got != want {
			t.Errorf("SourcePrefix(%q) = %q, want %q", in, got, want)
		}
	}
}
