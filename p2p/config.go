package p2p

import (
	"fmt"
	"log/slog"
	"net"
	"regexp"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
	ma "github.com/multiformats/go-multiaddr"
	"github.com/prometheus/client_golang/prometheus"
)

// DefaultNetwork is the network a node joins when none is named.
const DefaultNetwork = "mainnet"

var networkRE = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,31}$`)

// ValidateNetwork checks a network name: it becomes part of protocol IDs and
// topic names, so it is kept to lower-case letters, digits and dashes.
func ValidateNetwork(name string) error {
	if !networkRE.MatchString(name) {
		return fmt.Errorf("network name %q: want 1-32 lower-case letters, digits or dashes, starting with a letter or digit", name)
	}
	return nil
}

// Config configures a Node. Its zero value is a working node on the default
// network listening on a random loopback TCP port.
type Config struct {
	// Network names the network; zero means DefaultNetwork.
	Network string
	// Identity is the host's key; nil means a fresh Ed25519 key.
	Identity crypto.PrivKey
	// Listen are the addresses to listen on; nil means /ip4/127.0.0.1/tcp/0.
	Listen []ma.Multiaddr
	// Announce, when set, replaces the addresses the host advertises.
	Announce []ma.Multiaddr
	// Bootstrap are peers to connect to at start; nil means none (a new network).
	Bootstrap []peer.AddrInfo
	// MDNS turns on LAN discovery; off by default so tests stay quiet.
	MDNS bool
	// NoNAT turns off port mapping, AutoNAT, the relay client and hole
	// punching; zero (false) keeps them on, as a real node wants.
	NoNAT bool
	// Reachability overrides AutoNAT: "public" or "private"; empty leaves
	// it to AutoNAT. A node that knows it is behind NAT starts looking for
	// relays at once instead of after AutoNAT's probes.
	Reachability string
	// StaticRelays are the relays a node behind NAT reserves a slot on;
	// nil means candidates from the DHT.
	StaticRelays []peer.AddrInfo
	// JobRelay makes this node a relay for the peers of the live job
	// networks it serves (see AllowRelay, RequestRelay), so ranks whose
	// providers cannot reach each other directly can talk; it should be a
	// node with bandwidth to give. It runs from the start, AutoNAT or not.
	JobRelay bool
	// JobRelayBytes is what a job relay carries to and from each peer of
	// a job network, both directions together, when AllowRelay names no
	// budget; also the most one circuit carries each way. Zero means 32 GiB.
	JobRelayBytes int64
	// JobRelayDuration is how long a job relay serves a job network when
	// AllowRelay names no duration; also the longest one circuit lasts.
	// Zero means 24 hours.
	JobRelayDuration time.Duration
	// ConnLow and ConnHigh are the connection manager's watermarks; zero means 64 and 192.
	ConnLow, ConnHigh int
	// MaxConns caps the resource manager's connections; zero means 1024.
	MaxConns int
	// MaxMemory caps the resource manager's memory in bytes; zero means 1 GiB.
	MaxMemory int64
	// Records are the DHT record namespaces this node accepts, besides /pk.
	Records []RecordValidator
	// MaxMessageSize caps a GossipSub message; zero means 64 KiB.
	MaxMessageSize int
	// ColocatedNets are exempt from GossipSub's penalty for many peers on
	// one IP (or IPv6 /64), e.g. a LAN testnet; nil means none. Loopback is
	// always exempt.
	ColocatedNets []*net.IPNet
	// GossipHeartbeat overrides GossipSub's heartbeat; zero keeps its 1 s default.
	GossipHeartbeat time.Duration
	// DHTRefresh sets how often the routing table refreshes; zero keeps the
	// DHT's default (10 min). Negative turns the periodic refresh off.
	DHTRefresh time.Duration
	// Metrics, when set, receives libp2p's Prometheus metrics; nil disables them.
	Metrics prometheus.Registerer
	// Host, when set, is used as is instead of building one (mocknet in
	// tests); the transport fields above are then ignored.
	Host host.Host
	// Logger is the parent logger; nil means slog.Default().
	Logger *slog.Logger
}

// CheckReachability checks a Reachability value, naming it.
func CheckReachability(s string) error {
	if s != "" && s != "public" && s != "private" {
		return fmt.Errorf("reachability %q: want public, private, or leave it out (AutoNAT decides)", s)
	}
	return nil
}

func (c *Config) withDefaults() error {
	if err := CheckReachability(c.Reachability); err != nil {
		return err
	}
	if c.Network == "" {
		c.Network = DefaultNetwork
	}
	if err := ValidateNetwork(c.Network); err != nil {
		return err
	}
	if c.Listen == nil {
		c.Listen = []ma.Multiaddr{ma.StringCast("/ip4/127.0.0.1/tcp/0")}
	}
	if c.ConnLow == 0 {
		c.ConnLow = 64
	}
	if c.ConnHigh == 0 {
		c.ConnHigh = 192
	}
	if c.ConnHigh < c.ConnLow {
		return fmt.Errorf("connection manager: high watermark %d below low watermark %d", c.ConnHigh, c.ConnLow)
	}
	if c.MaxConns == 0 {
		c.MaxConns = 1024
	}
	if c.MaxMemory == 0 {
		c.MaxMemory = 1 << 30
	}
	if c.JobRelayBytes == 0 {
		c.JobRelayBytes = 32 << 30
	}
	if c.JobRelayDuration == 0 {
		c.JobRelayDuration = 24 * time.Hour
	}
	if c.JobRelayBytes < 0 || c.JobRelayDuration < 0 {
		return fmt.Errorf("job relay: negative budget (%d bytes, %s)", c.JobRelayBytes, c.JobRelayDuration)
	}
	if c.MaxMessageSize == 0 {
		c.MaxMessageSize = 64 << 10
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return nil
}

// Prefix is the root of everything a network speaks: /aixblock/<network>.
func Prefix(network string) string { return "/aixblock/" + network }

// ProtocolID names a stream protocol of the network, e.g.
// ProtocolID("testnet", "bid/1") is /aixblock/testnet/bid/1.
func ProtocolID(network, name string) protocol.ID {
	return protocol.ID(Prefix(network) + "/" + name)
}

// TopicName names a GossipSub topic of the network, e.g.
// /aixblock/testnet/offers/1.
func TopicName(network, name string) string { return Prefix(network) + "/" + name }
