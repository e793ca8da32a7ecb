package scripting

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"path"
	"strings"
	"sync"
	"time"
)

// ErrDenied is wrapped by errors of outbound requests to destinations the
// allow list does not name.
var ErrDenied = errors.New("scripting: destination not allowed")

// Allow is the allow list of outbound destinations for http.request: host or
// host:port glob patterns (path.Match, e.g. "api.example.com",
// "*.example.com:443") and CIDRs ("10.1.2.0/24"). Everything else is denied.
//
// The check is made on the address actually dialled, after DNS resolution,
// for every connection (so every redirect hop too): a name that matches a
// pattern but resolves to an address of an IANA special-purpose range
// (loopback, private, shared 100.64/10, link-local, documentation,
// benchmarking 198.18/15, reserved 240/4, NAT64 64:ff9b::/96, 6to4, ULA, …)
// or to one of this host's own interface addresses is denied unless a CIDR
// allows that address, or the pattern is that very IP address. So neither a
// redirect nor DNS rebinding reaches inside.
type Allow struct {
	hosts []string
	cidrs []netip.Prefix
	local localAddrs
}

// AllowsAnyHost reports whether a host pattern matches every name (such as
// "*" or "*:443"): then only the special-purpose ranges limit where scripts
// can go, which an operator should know.
func (a *Allow) AllowsAnyHost() bool {
	for _, pattern := range a.hosts {
		host := pattern
		if h, _, err := net.SplitHostPort(pattern); err == nil {
			host = h
		}
		if host == "*" {
			return true
		}
	}
	return false
}

// ParseAllow reads allow-list entries.
func ParseAllow(entries []string) (*Allow, error) {
	a := &Allow{}
	for _, e := range entries {
		e = strings.TrimSpace(e)
		if e == "" {
			continue
		}
		if strings.Contains(e, "/") {
			p, err := netip.ParsePrefix(e)
			if err != nil {
				return nil, fmt.Errorf("upstream allow %q: %w", e, err)
			}
			a.cidrs = append(a.cidrs, p.Masked())
			continue
		}
		if _, err := path.Match(e, ""); err != nil {
			return nil, fmt.Errorf("upstream allow %q: %w", e, err)
		}
		a.hosts = append(a.hosts, strings.ToLower(e))
	}
	return a, nil
}

// permits reports whether host (as named in the URL) on port may be reached
// at ip.
func (a *Allow) permits(host, port string, ip netip.Addr) bool {
	ip = ip.Unmap()
	for _, p := range a.cidrs {
		if p.Contains(ip) {
			return true
		}
	}
	host = strings.ToLower(host)
	for _, pattern := range a.hosts {
		if !matchHost(pattern, host, port) {
			continue
		}
		if isPublic(ip) && !a.local.has(ip) {
			return true
		}
		// An inside address needs the pattern to name it outright.
		patternHost := pattern
		if h, _, err := net.SplitHostPort(pattern); err == nil {
			patternHost = h
		}
		if literal, err := netip.ParseAddr(patternHost); err == nil && literal.Unmap() == ip {
			return true
		}
	}
	return false
}

// matchHost matches a host pattern, or a host:port pattern against
// host:port.
func matchHost(pattern, host, port string) bool {
	target := host
	if _, _, err := net.SplitHostPort(pattern); err == nil {
		target = net.JoinHostPort(host, port)
	}
	if pattern == target { // "[::1]:9000" is a literal, not a character class
		return true
	}
	ok, _ := path.Match(pattern, target)
	return ok
}

// specialPurpose are the IANA special-purpose address ranges (the IPv4 and
// IPv6 Special-Purpose Address Registries, RFC 6890 and successors) and
// multicast: none is a public destination, though a few are routable.
var specialPurpose = func() []netip.Prefix {
	var out []netip.Prefix
	for _, s := range []string{
		"0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16", "172.16.0.0/12",
		"192.0.0.0/24", "192.0.2.0/24", "192.31.196.0/24", "192.52.193.0/24", "192.88.99.0/24",
		"192.168.0.0/16", "192.175.48.0/24", "198.18.0.0/15", "198.51.100.0/24", "203.0.113.0/24",
		"224.0.0.0/4", "240.0.0.0/4", "255.255.255.255/32",
		"::/128", "::1/128", "::ffff:0:0/96", "64:ff9b::/96", "64:ff9b:1::/48", "100::/64", "2001::/23",
		"2001:db8::/32", "2002::/16", "2620:4f:8000::/48", "3fff::/20", "5f00::/16", "fc00::/7", "fe80::/10", "ff00::/8",
	} {
		out = append(out, netip.MustParsePrefix(s))
	}
	return out
}()

// isPublic reports whether ip is outside every special-purpose range.
func isPublic(ip netip.Addr) bool {
	ip = ip.Unmap()
	for _, p := range specialPurpose {
		if p.Contains(ip) {
			return false
		}
	}
	return true
}

// localAddrsTTL is how long the host's interface addresses are cached.
const localAddrsTTL = 10 * time.Second

// localAddrs are this host's own interface addresses, which count as inside
// even when they are public ones: a script must not reach the gateway's
// host (its admin ports, its metrics) through them.
type localAddrs struct {
	mu      sync.Mutex
	addrs   map[netip.Addr]bool
	fetched time.Time
}

func (l *localAddrs) has(ip netip.Addr) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if time.Since(l.fetched) > localAddrsTTL {
		l.addrs, l.fetched = interfaceAddrs(), time.Now()
	}
	return l.addrs[ip.Unmap()]
}

// interfaceAddrs lists the addresses of the host's interfaces; on failure,
// none (the special-purpose ranges still apply).
func interfaceAddrs() map[netip.Addr]bool {
	out := make(map[netip.Addr]bool)
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return out
	}
	for _, a := range addrs {
		if p, err := netip.ParsePrefix(a.String()); err == nil {
			out[p.Addr().Unmap()] = true
		}
	}
	return out
}

// maxRedirects bounds the redirect hops http.request follows.
const maxRedirects = 5

// newHTTPClient makes the shared client of http.request: connection reuse,
// a bounded idle pool, every dial checked against the allow list.
func newHTTPClient(allow *Allow) *http.Client {
	dialer := &net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}
	transport := &http.Transport{
		Proxy:                 nil, // a proxy would hide the destination from the check
		MaxIdleConns:          256,
		MaxIdleConnsPerHost:   32,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   10 * time.Second,
		ResponseHeaderTimeout: 0, // the call's context bounds it
		ForceAttemptHTTP2:     true,
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			host, port, err := net.SplitHostPort(addr)
			if err != nil {
				return nil, err
			}
			ips, err := net.DefaultResolver.LookupNetIP(ctx, "ip", host)
			if err != nil {
				return nil, err
			}
			for _, ip := range ips {
				if allow.permits(host, port, ip) {
					// Dial the checked address, not the name: no second lookup
					// that could answer differently.
					return dialer.DialContext(ctx, network, net.JoinHostPort(ip.String(), port))
				}
			}
			return nil, fmt.Errorf("%w: %s", ErrDenied, addr)
		},
	}
	return &http.Client{
		Transport: transport,
		CheckRedirect: func(req *http.Request, via []*http.Request) error {
			if len(via) >= maxRedirects {
				return fmt.Errorf("stopped after %d redirects", maxRedirects)
			}
			return nil // the dial of the next hop is checked like any other
		},
	}
}
