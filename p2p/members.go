package p2p

import (
	"context"
	"slices"

	"github.com/libp2p/go-libp2p/core/event"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
)

// Network membership. Namespacing keeps a node of another network from
// exchanging a record or a message with ours, but the transport still
// connects (it is the same libp2p), and such a peer would linger in the
// connection list and in `peers`. Every node therefore speaks one marker
// protocol of its network; a peer whose identify lists no such protocol is
// of another network (or no aixblock node at all) and is disconnected as
// soon as identify completes.

// memberProtocol is the marker a node of network speaks. Nothing is ever
// said on it: a stream on it is reset.
func memberProtocol(network string) protocol.ID { return ProtocolID(network, "member/1") }

// IsMember reports whether p has identified itself as a node of this
// network. Peers not yet identified are not members.
func (n *Node) IsMember(p peer.ID) bool {
	ok, err := n.Host.Peerstore().SupportsProtocols(p, memberProtocol(n.network))
	return err == nil && len(ok) > 0
}

// guardMembership marks this node as one of its network and disconnects
// every peer that identifies as something else, until ctx ends.
func (n *Node) guardMembership(ctx context.Context) error {
	// Its service's memory limit is nothing: nothing is read on it.
	HandleStream(n.Host, memberProtocol(n.network), 0, n.log, func(s network.Stream) { s.Reset() })
	sub, err := n.Host.EventBus().Subscribe(new(event.EvtPeerIdentificationCompleted))
	if err != nil {
		return err
	}
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		defer sub.Close()
		for {
			select {
			case <-ctx.Done():
				return
			case e, ok := <-sub.Out():
				if !ok {
					return
				}
				ev := e.(event.EvtPeerIdentificationCompleted)
				if slices.Contains(ev.Protocols, memberProtocol(n.network)) {
					continue
				}
				n.log.Debug("disconnecting a peer of another network", "peer_id", ev.Peer, "agent", ev.AgentVersion)
				_ = n.Host.Network().ClosePeer(ev.Peer)
			}
		}
	}()
	return nil
}
