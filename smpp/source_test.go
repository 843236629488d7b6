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
