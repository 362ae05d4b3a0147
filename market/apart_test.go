package market

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	ma "github.com/multiformats/go-multiaddr"
)

// Apart refuses a bidder that shares an owner with a run held, and
// holds each one it lets through.
func TestApart(t *testing.T) {
	var a Apart
	a.Hold("peerA", "0xAbC", "8.8.4.4")
	for _, tc := range []struct {
		name, peer, wallet, ip, want string
	}{
		{"another owner", "peerB", "0xdef", "1.1.1.1", ""},
		{"the one let through is held", "peerC", "0xdef", "", "its wallet 0xdef is paid for another run of this job"},
		{"the same peer", "peerA", "0x999", "", "it runs another run of this job"},
		{"the same wallet, any case", "peerD", "0xabc", "", "its wallet 0xabc is paid for another run of this job"},
		{"the same public IP", "peerE", "0x777", "8.8.4.4", "its address 8.8.4.4 runs another run of this job"},
		{"no address known", "peerF", "0x888", "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := a.Claim(tc.peer, tc.wallet, tc.ip); got != tc.want {
				t.Fatalf("Claim = %q, want %q", got, tc.want)
			}
		})
	}
	var none *Apart
	if none.Claim("peerA", "0xabc", "8.8.4.4") != "" || none.Peers() != nil {
		t.Fatal("a nil Apart refuses")
	}
}

func TestPublicIP(t *testing.T) {
	for _, tc := range []struct {
		addrs []string
		want  string
	}{
		{[]string{"/ip4/127.0.0.1/tcp/4001"}, ""},
		{[]string{"/ip4/10.1.2.3/tcp/4001", "/ip4/192.168.1.5/udp/4001/quic-v1"}, ""},
		{[]string{"/ip4/198.18.0.7/tcp/4001"}, ""}, // the NAT tests' "internet": benchmarking range
		{[]string{"/ip4/100.64.0.9/tcp/4001"}, ""}, // carrier NAT: shared by many
		{[]string{"/ip4/127.0.0.1/tcp/1", "/ip4/9.9.9.9/tcp/4001"}, "9.9.9.9"},
		{[]string{"/ip6/2606:4700::1111/tcp/4001"}, "2606:4700::1111"},
		{[]string{"/ip4/9.9.9.9/tcp/4001/p2p/12D3KooWGRUVh4kKxP9RTmDbPRjVwqDZFLWBAPuFZ1WFN9aWkEJU/p2p-circuit"}, ""}, // the relay's
	} {
		var addrs []ma.Multiaddr
		for _, a := range tc.addrs {
			addrs = append(addrs, ma.StringCast(a))
		}
		if got := PublicIP(addrs); got != tc.want {
			t.Errorf("PublicIP(%v) = %q, want %q", tc.addrs, got, tc.want)
		}
	}
}

// Two providers with their own peer IDs and one wallet collude: the
// cheaper one runs a job's first run; the second run, kept apart from
// that wallet, never goes to the other colluder though it bids lowest,
// and the requester says why it was refused.
func TestColludersOnOneWallet(t *testing.T) {
	nodes := startMarket(t, "marketapart", []nodeSpec{
		{"dgxh100", map[string]string{h100: "1000"}}, // colluder A
		{"dgxh100", map[string]string{h100: "2000"}}, // colluder B: A's wallet
		{"dgxh100", map[string]string{h100: "3000"}}, // honest
		{"", nil}, // requester
	}, Config{BidWindow: 2 * time.Second})
	nodes[1].signer.share(nodes[0].signer)
	req := nodes[3]
	waitProviders(t, req, h100, func(f []ProviderInfo) bool { return len(f) == 3 })
	offer := OfferRequest{Req: Requirements{GPUClass: h100, GPUs: 1}, Token: "native", MaxPrice: "5000",
		MaxDuration: time.Hour, SpecHash: specHash}
	first, _, err := req.m.Negotiate(context.Background(), offer)
	if err != nil {
		t.Fatal(err)
	}
	a, b, honest := nodes[0].p2p.Host.ID().String(), nodes[1].p2p.Host.ID().String(), nodes[2].p2p.Host.ID().String()
	if first.Provider != a {
		t.Fatalf("first run on %s, want the cheapest, %s", first.Provider, a)
	}
	offer.Apart = &Apart{}
	offer.Apart.Hold(first.Provider, first.ProviderWallet, "")
	second, st, err := req.m.Negotiate(context.Background(), offer)
	if err != nil {
		t.Fatal(err)
	}
	if second.Provider != honest {
		t.Fatalf("second run on %s (colluder B is %s), want the honest %s", second.Provider, b, honest)
	}
	var why []string
	for _, r := range st.Refusals {
		if r.Provider == b && r.Code == RefusedApart {
			why = append(why, r.Reason)
		}
	}
	if len(why) != 1 || !strings.Contains(why[0], first.ProviderWallet) {
		t.Fatalf("refusals %+v: want colluder B refused for its wallet", st.Refusals)
	}
	atOnce(t, req, offer)
}

// atOnce: two runs negotiated at the same time, sharing one Apart, go
// to two owners.
func atOnce(t *testing.T, req *tnode, offer OfferRequest) {
	offer.Apart = &Apart{}
	deals := make([]*Deal, 2)
	errs := make([]error, 2)
	var wg sync.WaitGroup
	for i := range deals {
		wg.Go(func() { deals[i], _, errs[i] = req.m.Negotiate(context.Background(), offer) })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	if strings.EqualFold(deals[0].ProviderWallet, deals[1].ProviderWallet) {
		t.Fatalf("two runs at once on one wallet: %s and %s", deals[0].Provider, deals[1].Provider)
	}
}
