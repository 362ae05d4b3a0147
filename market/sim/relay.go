package sim

import (
	"bytes"
	"slices"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"
)

// relayAddr is the circuit address a node behind NAT advertises, as a
// daemon's relay client does once it holds a slot on a relay. No relay
// carries it here (see the package doc): it tells the other nodes'
// markets that the node sits behind NAT.
var relayAddr = func() ma.Multiaddr {
	_, pub, err := crypto.GenerateEd25519Key(bytes.NewReader(make([]byte, 64)))
	if err != nil {
		panic(err)
	}
	id, err := peer.IDFromPublicKey(pub)
	if err != nil {
		panic(err)
	}
	return addrOf(0).Encapsulate(ma.StringCast("/p2p/" + id.String() + "/p2p-circuit"))
}()

// Addrs are the host's addresses, with relayAddr for a node behind NAT:
// what its DHT provider records carry.
func (h *simHost) Addrs() []ma.Multiaddr {
	addrs := h.Host.Addrs()
	h.net.mu.Lock()
	pl := h.net.nodes[h.ID()]
	h.net.mu.Unlock()
	if pl != nil && pl.nat {
		return append(slices.Clone(addrs), relayAddr)
	}
	return addrs
}
