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
// pattern but resolves to a loopback, private, link-local or unspecified
// address is denied unless a CIDR allows that address, or the pattern is that
// very IP address. So neither a redirect nor DNS rebinding reaches inside.
type Allow struct {
	hosts []string
	cidrs []netip.Prefix
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
		if isPublic(ip) {
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

func isPublic(ip netip.Addr) bool {
	return !(ip.IsLoopback() || ip.IsPrivate() || ip.IsLinkLocalUnicast() || ip.IsLinkLocalMulticast() ||
		ip.IsUnspecified() || ip.IsMulticast() || ip.IsInterfaceLocalMulticast())
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
