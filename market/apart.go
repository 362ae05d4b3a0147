package market

import (
	"fmt"
	"slices"
	"strings"
	"sync"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"
	manet "github.com/multiformats/go-multiaddr/net"
)

// Apart holds the owners of a replicated job's runs: their providers'
// peer IDs, payee wallets and public IPs. A deal made under it goes to
// none of them, and adds its own: runs negotiated at once, sharing one,
// cannot land on one owner however their negotiations interleave. The
// zero value and nil hold nothing; nil refuses nothing.
type Apart struct {
	mu      sync.Mutex
	peers   []string
	wallets []string
	ips     []string
}

// Hold adds a provider placed already; empty values are unknown.
func (a *Apart) Hold(peerID, wallet, ip string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.hold(peerID, wallet, ip)
}

func (a *Apart) hold(peerID, wallet, ip string) {
	for _, v := range []struct {
		to *[]string
		v  string
	}{{&a.peers, peerID}, {&a.wallets, strings.ToLower(wallet)}, {&a.ips, ip}} {
		if v.v != "" && !slices.Contains(*v.to, v.v) {
			*v.to = append(*v.to, v.v)
		}
	}
}

// Peers are the providers held, by peer ID.
func (a *Apart) Peers() []string {
	if a == nil {
		return nil
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	return slices.Clone(a.peers)
}

// Claim holds a bidder about to be awarded, or says why it may not be:
// it shares a peer ID, a wallet or a public IP with one held.
func (a *Apart) Claim(peerID, wallet, ip string) string {
	if a == nil {
		return ""
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if why := a.reason(peerID, wallet, ip); why != "" {
		return why
	}
	a.hold(peerID, wallet, ip)
	return ""
}

func (a *Apart) reason(peerID, wallet, ip string) string {
	switch {
	case slices.Contains(a.peers, peerID):
		return "it runs another run of this job"
	case wallet != "" && slices.Contains(a.wallets, strings.ToLower(wallet)):
		return fmt.Sprintf("its wallet %s is paid for another run of this job", wallet)
	case ip != "" && slices.Contains(a.ips, ip):
		return fmt.Sprintf("its address %s runs another run of this job", ip)
	}
	return ""
}

// RefusedApart is the code of a bid refused for its owner (Apart).
const RefusedApart = "apart"

// PeerIP is the public IP that h is connected to p at; "" when none is
// public (PublicIP).
func PeerIP(h host.Host, p string) string {
	id, err := peer.Decode(p)
	if err != nil {
		return ""
	}
	var addrs []ma.Multiaddr
	for _, c := range h.Network().ConnsToPeer(id) {
		addrs = append(addrs, c.RemoteMultiaddr())
	}
	return PublicIP(addrs)
}

// PublicIP is the first publicly routable IP among addrs; "" when there
// is none. Loopback, private, shared (carrier NAT) and documentation or
// benchmarking ranges are unknown, not an address: many honest peers
// share each of them (every loopback test, every home behind one NAT),
// and only an address on the internet says who runs a machine. A
// relayed connection's address is the relay's, not the peer's.
func PublicIP(addrs []ma.Multiaddr) string {
	for _, a := range addrs {
		if isRelayAddr(a) || !manet.IsPublicAddr(a) {
			continue
		}
		if ip, err := manet.ToIP(a); err == nil {
			return ip.String()
		}
	}
	return ""
}
