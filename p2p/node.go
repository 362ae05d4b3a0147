package p2p

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	dht "github.com/libp2p/go-libp2p-kad-dht"
	pubsub "github.com/libp2p/go-libp2p-pubsub"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
	"github.com/libp2p/go-libp2p/p2p/discovery/mdns"
	"github.com/libp2p/go-libp2p/p2p/protocol/identify"
)

// Node is a libp2p host with the network's DHT and GossipSub on it.
type Node struct {
	Host   host.Host
	DHT    *dht.IpfsDHT
	PubSub *pubsub.PubSub

	network   string
	bootstrap []peer.AddrInfo
	log       *slog.Logger
	ownsHost  bool
	mdns      mdns.Service

	stopGuard context.CancelFunc
	// stopPubSub ends GossipSub's goroutines, which run on their own
	// context: the one given to New may outlive the node.
	stopPubSub context.CancelFunc
	wg         sync.WaitGroup

	closeOnce sync.Once
	closeErr  error
}

// New builds the host (unless cfg.Host is given), the DHT in server mode and
// GossipSub. It does not dial anyone: call Bootstrap for that.
func New(ctx context.Context, cfg Config) (*Node, error) {
	if err := cfg.withDefaults(); err != nil {
		return nil, err
	}
	n := &Node{
		network:   cfg.Network,
		bootstrap: cfg.Bootstrap,
		log:       cfg.Logger.With("component", "p2p"),
	}
	validators, err := namespaced(cfg.Records)
	if err != nil {
		return nil, err
	}

	h := cfg.Host
	if h == nil {
		if cfg.Identity == nil {
			if cfg.Identity, _, err = crypto.GenerateEd25519Key(nil); err != nil {
				return nil, fmt.Errorf("generate identity: %w", err)
			}
		}
		if h, err = newHost(&cfg, n.relayCandidates); err != nil {
			return nil, err
		}
		n.ownsHost = true
	}
	n.Host = h
	gctx, stop := context.WithCancel(context.Background())
	n.stopGuard = stop
	if err := n.guardMembership(gctx); err != nil {
		stop()
		n.closeHost()
		return nil, fmt.Errorf("membership guard: %w", err)
	}

	dhtOpts := []dht.Option{
		dht.Mode(dht.ModeServer),
		dht.ProtocolPrefix(protocol.ID(Prefix(cfg.Network))),
		dht.Validator(validators),
		dht.BootstrapPeers(cfg.Bootstrap...),
	}
	switch {
	case cfg.DHTRefresh < 0:
		dhtOpts = append(dhtOpts, dht.DisableAutoRefresh())
	case cfg.DHTRefresh > 0:
		dhtOpts = append(dhtOpts, dht.RoutingTableRefreshPeriod(cfg.DHTRefresh))
	}
	if n.DHT, err = dht.New(h, dhtOpts...); err != nil {
		stop()
		n.closeHost()
		return nil, fmt.Errorf("dht: %w", err)
	}

	psctx, stopPubSub := context.WithCancel(ctx)
	if n.PubSub, err = newGossipSub(psctx, h, &cfg); err != nil {
		stopPubSub()
		stop()
		n.DHT.Close()
		n.closeHost()
		return nil, err
	}
	n.stopPubSub = stopPubSub

	if cfg.MDNS {
		n.mdns = mdns.NewMdnsService(h, "aixblock-"+cfg.Network, mdnsNotifee{n})
		if err := n.mdns.Start(); err != nil {
			n.log.Warn("mdns discovery off", "err", err)
			n.mdns = nil
		}
	}
	return n, nil
}

// Network is the name of the network this node belongs to.
func (n *Node) Network() string { return n.network }

// ProtocolID names a stream protocol of this node's network.
func (n *Node) ProtocolID(name string) protocol.ID { return ProtocolID(n.network, name) }

// TopicName names a GossipSub topic of this node's network.
func (n *Node) TopicName(name string) string { return TopicName(n.network, name) }

// Bootstrap dials the configured bootstrap peers in parallel and starts the
// DHT's refresh. With bootstrap peers configured it fails only when none of
// them could be reached; the DHT keeps retrying them in the background.
func (n *Node) Bootstrap(ctx context.Context) error {
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs []error
	)
	for _, ai := range n.bootstrap {
		if ai.ID == n.Host.ID() {
			continue
		}
		wg.Add(1)
		go func(ai peer.AddrInfo) {
			defer wg.Done()
			cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			defer cancel()
			if err := n.Host.Connect(cctx, ai); err != nil {
				n.log.Warn("bootstrap peer unreachable", "peer_id", ai.ID, "err", err)
				mu.Lock()
				errs = append(errs, fmt.Errorf("bootstrap %s: %w", ai.ID, err))
				mu.Unlock()
				return
			}
			// Connect returns after identify only when it dialled; a
			// connection that was already there may still be identifying.
			if ids, ok := n.Host.(interface{ IDService() identify.IDService }); ok {
				for _, c := range n.Host.Network().ConnsToPeer(ai.ID) {
					select {
					case <-ids.IDService().IdentifyWait(c):
					case <-cctx.Done():
					}
				}
			}
			if !n.IsMember(ai.ID) {
				n.log.Warn("bootstrap peer is not on this network; disconnected (check its --network)", "peer_id", ai.ID, "network", n.network)
				_ = n.Host.Network().ClosePeer(ai.ID)
				mu.Lock()
				errs = append(errs, fmt.Errorf("bootstrap %s: not a node of network %q", ai.ID, n.network))
				mu.Unlock()
				return
			}
			n.log.Debug("connected to bootstrap peer", "peer_id", ai.ID)
		}(ai)
	}
	wg.Wait()
	if len(errs) < len(n.bootstrap) {
		n.awaitRoutingTable(ctx, 5*time.Second)
	}
	if err := n.DHT.Bootstrap(ctx); err != nil {
		return fmt.Errorf("dht bootstrap: %w", err)
	}
	if len(n.bootstrap) > 0 && len(errs) == len(n.bootstrap) {
		return errors.Join(errs...)
	}
	return nil
}

// awaitRoutingTable waits until the DHT has added a connected peer: it does
// so only after identify, a moment after the dial returns, and a refresh
// started before then finds an empty table.
func (n *Node) awaitRoutingTable(ctx context.Context, limit time.Duration) {
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	deadline := time.After(limit)
	for n.DHT.RoutingTable().Size() == 0 {
		select {
		case <-t.C:
		case <-deadline:
			return
		case <-ctx.Done():
			return
		}
	}
}

// RefreshRoutingTable runs one DHT refresh and waits for it, so that a
// freshly bootstrapped node knows more than its bootstrap peers.
func (n *Node) RefreshRoutingTable(ctx context.Context) error {
	select {
	case err := <-n.DHT.ForceRefresh():
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Close stops discovery, the DHT and (if this node built it) the host.
func (n *Node) Close() error {
	n.closeOnce.Do(func() {
		var errs []error
		n.stopGuard()
		n.stopPubSub()
		n.wg.Wait()
		if n.mdns != nil {
			errs = append(errs, n.mdns.Close())
		}
		errs = append(errs, n.DHT.Close())
		errs = append(errs, n.closeHost())
		n.closeErr = errors.Join(errs...)
	})
	return n.closeErr
}

func (n *Node) closeHost() error {
	if !n.ownsHost {
		return nil
	}
	return n.Host.Close()
}

// relayCandidates feeds AutoRelay with peers from the routing table: any of
// them may offer a relay service, and AutoRelay checks before using one.
func (n *Node) relayCandidates(ctx context.Context, num int) <-chan peer.AddrInfo {
	out := make(chan peer.AddrInfo, num)
	defer close(out)
	if n.DHT == nil {
		return out
	}
	for _, p := range n.DHT.RoutingTable().ListPeers() {
		if len(out) == num {
			break
		}
		out <- n.Host.Peerstore().PeerInfo(p)
	}
	return out
}

type mdnsNotifee struct{ n *Node }

func (m mdnsNotifee) HandlePeerFound(ai peer.AddrInfo) {
	if ai.ID == m.n.Host.ID() {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := m.n.Host.Connect(ctx, ai); err != nil {
		m.n.log.Debug("mdns peer unreachable", "peer_id", ai.ID, "err", err)
	}
}
