package market

import (
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"
)

// relayed says whether provider p sits behind NAT as far as this node
// knows: it is not connected here, and an address it published goes
// through a relay (a daemon that finds itself behind NAT advertises its
// relay client's circuit addresses). Such a provider is reached through
// a relay or a hole punch, if at all: slower than a direct dial, often
// not within the bid window. So it is asked after providers that can be
// dialled, and the window does not wait on it once a bid came (see
// negotiation.waiting); with nothing else bidding it still can win.
func (m *Market) relayed(p peer.ID) bool {
	if m.n.Host.Network().Connectedness(p) == network.Connected {
		return false
	}
	for _, a := range m.n.Host.Peerstore().Addrs(p) {
		if isRelayAddr(a) {
			return true
		}
	}
	return false
}

// isRelayAddr says whether a is a circuit address: one through a relay.
func isRelayAddr(a ma.Multiaddr) bool {
	_, err := a.ValueForProtocol(ma.P_CIRCUIT)
	return err == nil
}
