package smpp

import (
	"math"
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
	ip, other := sourceAddr(addr)
	if !ip.IsValid() {
		return other
	}
	if ip.Is6() {
		p, _ := ip.Prefix(64)
		return p.String()
	}
	return ip.String()
}

// SourcePrefix is the network a peer is counted under by the limits that
// hold a source spread over many addresses (the public HTTP routes' second
// level of rate limits, the logins in progress): an IPv4 address by its
// /24, an IPv6 one by its /48. A /24 is the smallest IPv4 block routed
// between networks and what one customer is commonly given; a /48 is what
// an IPv6 site is routinely given (RFC 6177). addr is as for SourceKey; an
// IPv4-mapped IPv6 address is IPv4, a zone is dropped, and what parses as
// no address is its own prefix, as SourceKey makes it its own key.
func SourcePrefix(addr string) string {
	ip, other := sourceAddr(addr)
	if !ip.IsValid() {
		return other
	}
	bits := 24
	if ip.Is6() {
		bits = 48
	}
	p, _ := ip.Prefix(bits)
	return p.String()
}

// sourceAddr parses addr ("host:port" or a bare host) into an address
// without zone, an IPv4-mapped one unmapped (an IPv4 peer on a dual-stack
// socket is the IPv4 address). What is no address comes back as the
// invalid Addr and the string to count it under: the host of a
// "host:port", else addr itself.
func sourceAddr(addr string) (netip.Addr, string) {
	ip, err := netip.ParseAddr(addr)
	if err != nil {
		host, _, serr := net.SplitHostPort(addr)
		if serr != nil {
			return netip.Addr{}, addr
		}
		if ip, err = netip.ParseAddr(host); err != nil {
			return netip.Addr{}, host
		}
	}
	return ip.Unmap().WithZone(""), ""
}

// PrefixTimes is how many times a source's share its network
// (SourcePrefix) may hold under the limits counted at both levels: the
// SMPP listener's unbound connections (ServerOptions.MaxUnboundPerIP),
// the HTTP listeners' open connections (http.max_conns_per_addr), as the
// public HTTP routes' rate limits give a network four addresses' burst.
// Four, not one: the addresses of a NAT'd office or a campus share a /24,
// and one of them at its own cap leaves the others three addresses' worth;
// not 256: counted by address alone, 63 addresses of one /26 held every
// one of the SMPP listener's 2,000 connections (32 each) and 16 every one
// of the HTTP listener's 1,024 (64 each).
const PrefixTimes = 4

// NetworkCap is perSource × PrefixTimes, saturating at the largest int
// (a per-source cap set absurdly high is no reason to wrap around).
func NetworkCap(perSource int) int {
	if perSource > math.MaxInt/PrefixTimes {
		return math.MaxInt
	}
	return perSource * PrefixTimes
}
