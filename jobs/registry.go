package jobs

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"time"
)

// A pull makes the provider's engine send requests to the registry an
// image names, from the provider's own network: a requester who names
// 127.0.0.1:PORT/x, a LAN address or a name that resolves there would
// have the engine probe the provider's local services. checkPull stops
// such a pull before the engine is asked, and a failed pull's reason
// carries none of the engine's message (which quotes what the far side
// answered).

// registryLookupTimeout bounds resolving a registry's host.
const registryLookupTimeout = 10 * time.Second

// registryOf is the registry host (with its port, as written) an image
// reference names, or "" for a Docker Hub name. It follows the engine's
// rule (distribution/reference): the first path component is a registry
// when it has a dot or a colon, is "localhost", or has an upper-case
// letter.
func registryOf(ref string) string {
	i := strings.IndexByte(ref, '/')
	if i < 0 {
		return ""
	}
	d := ref[:i]
	if !strings.ContainsAny(d, ".:") && d != "localhost" && strings.ToLower(d) == d {
		return ""
	}
	return d
}

// splitRegistry splits a registry as written in an image name into its
// host (an IPv6 literal without brackets) and port ("" when none).
func splitRegistry(r string) (host, port string, ok bool) {
	if rest, found := strings.CutPrefix(r, "["); found {
		end := strings.IndexByte(rest, ']')
		if end < 0 {
			return "", "", false
		}
		host, rest = rest[:end], rest[end+1:]
		if rest != "" {
			if port, found = strings.CutPrefix(rest, ":"); !found {
				return "", "", false
			}
		}
	} else {
		if strings.Count(r, ":") > 1 {
			return "", "", false
		}
		host, port, _ = strings.Cut(r, ":")
	}
	if host == "" {
		return "", "", false
	}
	if port != "" {
		if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
			return "", "", false
		}
	}
	return host, port, true
}

// numericName reports whether host, not an IP address, would still be
// read as one by some resolvers (2130706433, 127.1, 0x7f.1): its last
// label is a number. No top-level domain is.
func numericName(host string) bool {
	labels := strings.Split(strings.TrimSuffix(host, "."), ".")
	last := strings.ToLower(labels[len(labels)-1])
	if h, ok := strings.CutPrefix(last, "0x"); ok {
		_, err := strconv.ParseUint(h, 16, 64)
		return err == nil || h == ""
	}
	_, err := strconv.ParseUint(last, 10, 64)
	return err == nil
}

// allowedRegistry reports whether the operator allows pulls from host
// (and port) whatever it resolves to (Config.AllowRegistries).
func (m *Manager) allowedRegistry(host, port string) bool {
	norm := func(s string) string { return strings.TrimSuffix(strings.ToLower(s), ".") }
	for _, a := range m.cfg.AllowRegistries {
		h, p, ok := splitRegistry(a)
		if !ok || norm(h) != norm(host) {
			continue
		}
		if p == "" || p == port {
			return true
		}
	}
	return false
}

// checkPull refuses to pull ref from a registry on the provider's own
// machine or network: one that is localhost, or whose host is (or
// resolves, at any of its addresses, to) a loopback, link-local,
// private, unspecified, multicast or reserved address, unless the
// operator allows the registry by name. Docker Hub names are not
// checked: the engine pulls them from the Hub (or the mirror its
// operator set).
func (m *Manager) checkPull(ctx context.Context, ref string) error {
	reg := registryOf(ref)
	if reg == "" {
		return nil
	}
	refuse := func(why string, args ...any) error {
		return fmt.Errorf("image %s: its registry %s %s; this provider pulls only from registries at public addresses unless its operator allows one by name (AllowRegistries)", ref, reg, fmt.Sprintf(why, args...))
	}
	host, port, ok := splitRegistry(reg)
	if !ok {
		return refuse("is not a host or host:port")
	}
	if m.allowedRegistry(host, port) {
		return nil
	}
	if h := strings.TrimSuffix(strings.ToLower(host), "."); h == "localhost" || strings.HasSuffix(h, ".localhost") {
		return refuse("is this machine")
	}
	var addrs []netip.Addr
	if a, err := netip.ParseAddr(host); err == nil {
		addrs = []netip.Addr{a}
	} else {
		if numericName(host) {
			return refuse("is not a name or an IP address")
		}
		lookup := m.lookupIP
		if lookup == nil {
			lookup = func(ctx context.Context, host string) ([]netip.Addr, error) {
				return net.DefaultResolver.LookupNetIP(ctx, "ip", host)
			}
		}
		lctx, cancel := context.WithTimeout(ctx, registryLookupTimeout)
		defer cancel()
		addrs, err = lookup(lctx, host)
		if err != nil {
			// The resolver's message names this provider's DNS server:
			// it stays in the log.
			m.log.Info("image registry does not resolve", "image", ref, "registry", reg, "err", err)
			return refuse("does not resolve")
		}
		if len(addrs) == 0 {
			return refuse("resolves to no address")
		}
	}
	for _, a := range addrs {
		if kind := internalAddr(a); kind != "" {
			article := "a"
			if strings.IndexByte("aeiou", kind[0]) >= 0 {
				article = "an"
			}
			return refuse("resolves to %s, %s %s address", a, article, kind)
		}
	}
	return nil
}

// Address ranges beyond netip's own tests that are not the public
// internet's.
var (
	internalRanges = []struct {
		p    netip.Prefix
		kind string
	}{
		{netip.MustParsePrefix("0.0.0.0/8"), "unspecified"}, // "this network"; Linux takes 0.0.0.0 as itself
		{netip.MustParsePrefix("100.64.0.0/10"), "shared (carrier-grade NAT)"},
		{netip.MustParsePrefix("192.0.0.0/24"), "reserved"},
		{netip.MustParsePrefix("198.18.0.0/15"), "reserved"},
		{netip.MustParsePrefix("240.0.0.0/4"), "reserved"}, // with the broadcast address
		{netip.MustParsePrefix("fec0::/10"), "private"},    // site-local
		{netip.MustParsePrefix("64:ff9b:1::/48"), "private"},
	}
	// IPv6 ranges that carry an IPv4 address: NAT64, 6to4, IPv4-compatible.
	nat64     = netip.MustParsePrefix("64:ff9b::/96")
	sixToFour = netip.MustParsePrefix("2002::/16")
	v4compat  = netip.MustParsePrefix("::/96")
)

// internalAddr names the kind of a that is not a public internet
// address (loopback, private, ...), or is "". An IPv6 address that
// carries an IPv4 one (mapped, NAT64, 6to4, IPv4-compatible) is judged
// by that address.
func internalAddr(a netip.Addr) string {
	a = a.WithZone("")
	switch {
	case a.Is4In6():
		return internalAddr(a.Unmap())
	case a.IsUnspecified():
		return "unspecified"
	case a.IsLoopback():
		return "loopback"
	case a.IsLinkLocalUnicast():
		return "link-local"
	case a.IsMulticast():
		return "multicast"
	case a.IsPrivate():
		return "private"
	}
	if a.Is6() {
		b := a.As16()
		switch {
		case nat64.Contains(a), v4compat.Contains(a):
			return internalAddr(netip.AddrFrom4([4]byte(b[12:16])))
		case sixToFour.Contains(a):
			return internalAddr(netip.AddrFrom4([4]byte(b[2:6])))
		}
	}
	for _, r := range internalRanges {
		if r.p.Contains(a) {
			return r.kind
		}
	}
	return ""
}

// registryName is how a failed pull's reason names ref's registry.
func registryName(ref string) string {
	if r := registryOf(ref); r != "" {
		return r
	}
	return "Docker Hub"
}
