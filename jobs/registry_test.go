package jobs

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
)

// secretService is an HTTP service on the provider's loopback, as an
// operator's admin page would be: it answers every request with a secret
// and counts the requests.
func secretService(t *testing.T) (addr, secret string, requests *atomic.Int64) {
	t.Helper()
	secret = "INTERNAL-ONLY admin page: db_password=" + randomText(t)
	requests = new(atomic.Int64)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		requests.Add(1)
		w.WriteHeader(http.StatusForbidden)
		fmt.Fprintln(w, secret)
	}))
	t.Cleanup(srv.Close)
	return srv.Listener.Addr().String(), secret, requests
}

// closedPort is a loopback port nothing listens on.
func closedPort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// An image pull into the provider's own network, from the hostile side
// (issue 28, N4), on the real engine: a requester names an image on the
// provider's loopback. The engine must not be asked to pull it (its
// requests would reach the service, and its error would carry the
// service's answer back to the requester), and a closed port must read
// the same as an open one. An operator who allows the registry by name
// lets the pull go; even then the requester's reason carries none of
// the engine's message.
func TestImagePullIntoProviderNetwork(t *testing.T) {
	d := dockerOrSkip(t)
	m, _ := newTestManager(t, d, t.TempDir())
	addr, secret, requests := secretService(t)

	var reasons []string
	for _, host := range []string{addr, closedPort(t)} {
		s := job("exit", "0")
		s.Image = host + "/admin/page:1"
		j := runJob(t, m, s)
		t.Logf("%s: %s %q; %d requests reached the service", s.Image, j.State, j.Reason, requests.Load())
		if j.State != Failed {
			t.Fatalf("%s: %s", s.Image, j.State)
		}
		if strings.Contains(j.Reason, "db_password") || strings.Contains(j.Reason, "refused") {
			t.Errorf("the requester learns what the provider's network answered: %q", j.Reason)
		}
		want := fmt.Sprintf("image %s: its registry %s resolves to 127.0.0.1, a loopback address", s.Image, host)
		if !strings.Contains(j.Reason, want) {
			t.Errorf("reason %q; want it to say %q", j.Reason, want)
		}
		reasons = append(reasons, strings.ReplaceAll(j.Reason, host, "HOST"))
	}
	if n := requests.Load(); n != 0 {
		t.Errorf("the engine sent %d requests to the provider's loopback", n)
	}
	if reasons[0] != reasons[1] {
		t.Errorf("an open port reads %q, a closed one %q", reasons[0], reasons[1])
	}

	m.cfg.AllowRegistries = []string{addr}
	s := job("exit", "0")
	s.Image = addr + "/admin/page:1"
	j := runJob(t, m, s)
	t.Logf("allowed: %s %q; %d requests", j.State, j.Reason, requests.Load())
	if j.State != Failed || requests.Load() == 0 {
		t.Fatalf("an allowed registry: %s %q, %d requests", j.State, j.Reason, requests.Load())
	}
	if strings.Contains(j.Reason, secret) || strings.Contains(j.Reason, "db_password") || len(j.Reason) > 300 {
		t.Errorf("the engine's error reached the requester: %q", j.Reason)
	}
}

// fakeResolver answers lookups from a table; a name it lacks does not
// resolve.
func fakeResolver(table map[string][]string) func(ctx context.Context, host string) ([]netip.Addr, error) {
	return func(ctx context.Context, host string) ([]netip.Addr, error) {
		addrs, ok := table[host]
		if !ok {
			return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
		}
		var out []netip.Addr
		for _, a := range addrs {
			out = append(out, netip.MustParseAddr(a))
		}
		return out, nil
	}
}

// Which registries a pull may reach, on the fake runtime with a fake
// resolver: a registry that resolves (every one of its addresses) to
// loopback, link-local, private, unspecified, multicast or reserved
// space is refused before the engine is asked, unless the operator
// allows it by name; Docker Hub names are not looked up. Whatever the
// engine says of a failed pull stays in the provider's log.
func TestPullRegistryCheck(t *testing.T) {
	dns := registryResolver()
	for _, tc := range registryCases() {
		t.Run(tc.image, func(t *testing.T) { checkRegistryCase(t, dns, tc) })
	}

	t.Run("the engine's error stays in the provider's log", func(t *testing.T) {
		rt := newFakeRuntime()
		secret := "INTERNAL-ONLY admin page: db_password=" + randomText(t)
		rt.fail("Pull", errors.New("docker pull registry.example/x: Error response from daemon: "+secret))
		m := fakeManager(t, t.TempDir(), rt, &fakeContent{}, nil)
		m.lookupIP = dns
		_, _, _, err := m.image(context.Background(), "registry.example/x", t.TempDir())
		if err == nil || strings.Contains(err.Error(), "db_password") || !strings.Contains(err.Error(), "image registry.example/x is not in the local engine and could not be pulled from registry.example") {
			t.Fatalf("reason %v", err)
		}
	})
}

// registryResolver resolves the registries of registryCases.
func registryResolver() func(ctx context.Context, host string) ([]netip.Addr, error) {
	return fakeResolver(map[string][]string{
		"registry.example":   {"93.184.216.34", "2606:2800:220:1::1"},
		"docker.io":          {"54.236.113.205"},
		"mixed.example":      {"93.184.216.34", "::ffff:10.0.0.1"},
		"rebind.example":     {"127.0.0.1"},
		"metadata.example":   {"169.254.169.254"},
		"lan.example":        {"192.168.1.10"},
		"v6lan.example":      {"fd12:3456::1"},
		"nat64.example":      {"64:ff9b::7f00:1"},
		"sixtofour.example":  {"2002:7f00:1::1"},
		"cgnat.example":      {"100.64.1.1"},
		"multicast.example":  {"239.1.2.3"},
		"registry.lan":       {"192.168.1.20"},
		"nothing.example":    {},
		"broadcast.example":  {"255.255.255.255"},
		"v6compat.example":   {"::7f00:1"},
		"linklocal6.example": {"fe80::1"},
	})
}

// registryCase is one image of TestPullRegistryCheck.
type registryCase struct {
	image  string
	allow  []string
	refuse string // part of the reason; "" means the pull goes to the engine
}

func registryCases() []registryCase {
	return []registryCase{
		{image: "alpine:3"},
		{image: "library/alpine"},
		{image: "someone/tool@sha256:" + strings.Repeat("a", 64)},
		{image: "registry.example/team/tool:1"},
		{image: "registry.example:5000/team/tool:1"},
		{image: "docker.io/library/alpine:3"},
		{image: "127.0.0.1:5000/x", refuse: "its registry 127.0.0.1:5000 resolves to 127.0.0.1, a loopback address"},
		{image: "127.0.0.2/x", refuse: "127.0.0.2, a loopback address"},
		{image: "localhost:5000/x", refuse: "its registry localhost:5000 is this machine"},
		{image: "localhost/x", refuse: "its registry localhost is this machine"},
		{image: "LOCALHOST/x", refuse: "its registry LOCALHOST is this machine"},
		{image: "api.localhost/x", refuse: "its registry api.localhost is this machine"},
		{image: "localhost./x", refuse: "is this machine"},
		{image: "10.1.2.3/x", refuse: "10.1.2.3, a private address"},
		{image: "172.16.0.1/x", refuse: "172.16.0.1, a private address"},
		{image: "192.168.0.1:80/x", refuse: "192.168.0.1, a private address"},
		{image: "100.64.0.1/x", refuse: "100.64.0.1, a shared (carrier-grade NAT) address"},
		{image: "169.254.169.254/latest/meta-data", refuse: "169.254.169.254, a link-local address"},
		{image: "0.0.0.0:5000/x", refuse: "0.0.0.0, an unspecified address"},
		{image: "0.1.2.3/x", refuse: "0.1.2.3, an unspecified address"},
		{image: "224.0.0.1/x", refuse: "224.0.0.1, a multicast address"},
		{image: "[::1]:5000/x", refuse: "::1, a loopback address"},
		{image: "[::]/x", refuse: "resolves to ::, an unspecified address"},
		{image: "[::ffff:127.0.0.1]:5000/x", refuse: "::ffff:127.0.0.1, a loopback address"},
		{image: "[fe80::1]/x", refuse: "fe80::1, a link-local address"},
		{image: "[fd00::1]/x", refuse: "fd00::1, a private address"},
		{image: "[ff02::1]/x", refuse: "ff02::1, a multicast address"},
		{image: "mixed.example/x", refuse: "its registry mixed.example resolves to ::ffff:10.0.0.1, a private address"},
		{image: "rebind.example:443/x", refuse: "its registry rebind.example:443 resolves to 127.0.0.1, a loopback address"},
		{image: "metadata.example/x", refuse: "169.254.169.254, a link-local address"},
		{image: "lan.example/x", refuse: "192.168.1.10, a private address"},
		{image: "v6lan.example/x", refuse: "fd12:3456::1, a private address"},
		{image: "nat64.example/x", refuse: "64:ff9b::7f00:1, a loopback address"},
		{image: "sixtofour.example/x", refuse: "2002:7f00:1::1, a loopback address"},
		{image: "v6compat.example/x", refuse: "::7f00:1, a loopback address"},
		{image: "linklocal6.example/x", refuse: "fe80::1, a link-local address"},
		{image: "cgnat.example/x", refuse: "100.64.1.1, a shared"},
		{image: "multicast.example/x", refuse: "239.1.2.3, a multicast address"},
		{image: "broadcast.example/x", refuse: "255.255.255.255, a reserved address"},
		{image: "nothing.example/x", refuse: "its registry nothing.example resolves to no address"},
		{image: "unknown.example/x", refuse: "its registry unknown.example does not resolve"},
		{image: "2130706433:5000/x", refuse: "its registry 2130706433:5000 is not a name or an IP address"},
		{image: "127.1/x", refuse: "its registry 127.1 is not a name or an IP address"},
		{image: "0x7f.0x1/x", refuse: "is not a name or an IP address"},
		{image: "registry.lan:5000/x", allow: []string{"registry.lan"}},
		{image: "REGISTRY.LAN/x", allow: []string{"registry.lan"}},
		{image: "127.0.0.1:5000/x", allow: []string{"127.0.0.1:5000"}},
		{image: "127.0.0.1:5001/x", allow: []string{"127.0.0.1:5000"}, refuse: "a loopback address"},
		{image: "lan.example/x", allow: []string{"registry.lan"}, refuse: "a private address"},
	}
}

// checkRegistryCase pulls tc's image on a manager resolving with dns.
func checkRegistryCase(t *testing.T, dns func(ctx context.Context, host string) ([]netip.Addr, error), tc registryCase) {
	rt := newFakeRuntime()
	m := fakeManager(t, t.TempDir(), rt, &fakeContent{}, func(c *Config) { c.AllowRegistries = tc.allow })
	m.lookupIP = dns
	_, _, _, err := m.image(context.Background(), tc.image, t.TempDir())
	pulled := rt.called("Pull", tc.image)
	if tc.refuse == "" {
		if !pulled {
			t.Fatalf("not pulled: %v", err)
		}
		return
	}
	if pulled || err == nil || !strings.Contains(err.Error(), tc.refuse) || !strings.Contains(err.Error(), "image "+tc.image+": ") {
		t.Fatalf("pulled %v, %v; want a refusal naming the image and %q", pulled, err, tc.refuse)
	}
	if len(tc.allow) == 0 && !strings.Contains(err.Error(), "AllowRegistries") {
		t.Errorf("the refusal does not say how an operator allows a registry: %v", err)
	}
}
