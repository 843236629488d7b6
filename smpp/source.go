package smpp

import (
	"net"
	"net/netip"
)

// SourceKey is the source a peer is counted under by every per-address
// limit, on the SMPP listener and the HTTP ones alike (connections per
// address, unbound connections, failed binds and logins, the public
// routes' rate limits): an IPv4 address as it is, an IPv6 address by its
// /64. A /64 is the least an IPv6 end site is given, so one host or home
// line has 2^64 addresses: counted one by one, each limit would hold it
// back by nothing. addr is "host:port" or a bare host (a net.Addr's or
// http.Request.RemoteAddr's form); what parses as neither is its own key.
func SourceKey(addr string) string {
	ip, err := netip.ParseAddr(addr)
	if err != nil {
		host, _, serr := net.SplitHostPort(addr)
		if serr != nil {
			return addr
		}
		if ip, err = netip.ParseAddr(host); err != nil {
			return host
		}
	}
	ip = ip.Unmap().WithZone("") // an IPv4 peer on a dual-stack socket is the IPv4 address
	if ip.Is6() {
		p, _ := ip.Prefix(64)
		return p.String()
	}
	return ip.String()
}
