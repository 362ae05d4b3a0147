package p2p

import (
	"context"
	"errors"
	"fmt"
	"syscall"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	rcmgr "github.com/libp2p/go-libp2p/p2p/host/resource-manager"
	"github.com/libp2p/go-libp2p/p2p/muxer/yamux"
	"github.com/libp2p/go-libp2p/p2p/net/connmgr"
	noise "github.com/libp2p/go-libp2p/p2p/security/noise"
	tls "github.com/libp2p/go-libp2p/p2p/security/tls"
	quic "github.com/libp2p/go-libp2p/p2p/transport/quic"
	"github.com/libp2p/go-libp2p/p2p/transport/tcp"
	ma "github.com/multiformats/go-multiaddr"
	manet "github.com/multiformats/go-multiaddr/net"
)

// UserAgent is what identify tells other peers; node sets the version.
var UserAgent = "aixblock/dev"

// newHost builds the libp2p host. relayPeers feeds AutoRelay with candidate
// relays; it is only called once the DHT exists, so it may read it.
func newHost(cfg *Config, relayPeers func(context.Context, int) <-chan peer.AddrInfo) (host.Host, error) {
	cm, err := connmgr.NewConnManager(cfg.ConnLow, cfg.ConnHigh, connmgr.WithGracePeriod(time.Minute))
	if err != nil {
		return nil, fmt.Errorf("connection manager: %w", err)
	}
	// Explicit system-wide caps; per-peer and per-protocol limits keep
	// libp2p's scaled defaults, which already bound a single misbehaving
	// peer. The services of the protocols this node serves have memory
	// limits of their own (HandleStream), their other limits the defaults.
	limits := rcmgr.PartialLimitConfig{
		System: rcmgr.ResourceLimits{
			Conns:           rcmgr.LimitVal(cfg.MaxConns),
			ConnsInbound:    rcmgr.LimitVal(cfg.MaxConns / 2),
			ConnsOutbound:   rcmgr.LimitVal(cfg.MaxConns),
			Streams:         rcmgr.LimitVal(cfg.MaxConns * 16),
			StreamsInbound:  rcmgr.LimitVal(cfg.MaxConns * 8),
			StreamsOutbound: rcmgr.LimitVal(cfg.MaxConns * 16),
			Memory:          rcmgr.LimitVal64(cfg.MaxMemory),
			FD:              rcmgr.LimitVal(cfg.MaxConns),
		},
	}.Build(rcmgr.DefaultLimits.AutoScale())
	rm, err := rcmgr.NewResourceManager(limiter{rcmgr.NewFixedLimiter(limits)})
	if err != nil {
		return nil, fmt.Errorf("resource manager: %w", err)
	}

	opts := []libp2p.Option{
		libp2p.Identity(cfg.Identity),
		libp2p.NoListenAddrs, // listened to one by one below
		libp2p.Transport(tcp.NewTCPTransport),
		libp2p.Transport(quic.NewTransport),
		// TLS first, as Kubo orders them: its AES-GCM runs on the CPU's AES
		// instructions, several times noise's ChaCha20-Poly1305 here, and
		// a bulk transfer's ceiling is the cipher. Noise stays for peers
		// that only speak it. The TLS is libp2p's, corked: the records of
		// one write leave in one system call (cork.go).
		libp2p.Security(tls.ID, newCorkedTLS),
		libp2p.Security(noise.ID, noise.New),
		libp2p.Muxer(yamux.ID, yamux.DefaultTransport),
		libp2p.ConnectionManager(cm),
		libp2p.ResourceManager(rm),
		libp2p.UserAgent(UserAgent),
	}
	if cfg.Metrics != nil {
		opts = append(opts, libp2p.PrometheusRegisterer(cfg.Metrics))
	} else {
		opts = append(opts, libp2p.DisableMetrics())
	}
	if len(cfg.Announce) > 0 {
		announce := cfg.Announce
		opts = append(opts, libp2p.AddrsFactory(func([]ma.Multiaddr) []ma.Multiaddr { return announce }))
	}
	if cfg.NoNAT {
		opts = append(opts, libp2p.DisableRelay())
	} else {
		opts = append(opts,
			libp2p.NATPortMap(),
			libp2p.EnableNATService(),
			libp2p.EnableAutoNATv2(),
			libp2p.EnableRelay(),
			libp2p.EnableHolePunching(),
		)
		if len(cfg.StaticRelays) > 0 {
			opts = append(opts, libp2p.EnableAutoRelayWithStaticRelays(cfg.StaticRelays))
		} else {
			opts = append(opts, libp2p.EnableAutoRelayWithPeerSource(relayPeers))
		}
		switch cfg.Reachability {
		case "public":
			opts = append(opts, libp2p.ForceReachabilityPublic())
		case "private":
			opts = append(opts, libp2p.ForceReachabilityPrivate())
		}
	}
	h, err := libp2p.New(opts...)
	if err != nil {
		rm.Close()
		return nil, fmt.Errorf("libp2p host: %w", err)
	}
	if err := listen(h, cfg); err != nil {
		h.Close()
		return nil, err
	}
	if cfg.JobRelay {
		if err := startJobRelay(h, cfg); err != nil {
			h.Close()
			return nil, err
		}
	}
	return h, nil
}

// listen fails on the first address that cannot be listened on (a port in
// use, a bad interface), unlike libp2p, which is content if any one works;
// a user who configured an address wants to know. Only an address family
// this machine lacks (no IPv6) is a warning.
func listen(h host.Host, cfg *Config) error {
	ok := 0
	for _, a := range cfg.Listen {
		err := h.Network().Listen(a)
		switch {
		case err == nil:
			ok++
		case errors.Is(err, syscall.EAFNOSUPPORT), errors.Is(err, syscall.EADDRNOTAVAIL) && isUnspecified(a):
			cfg.Logger.Warn("address family unavailable; not listening", "addr", a, "err", err)
		default:
			return fmt.Errorf("listen %s: %w", a, err)
		}
	}
	if ok == 0 {
		return fmt.Errorf("listen: none of %v could be listened on", cfg.Listen)
	}
	return nil
}

func isUnspecified(a ma.Multiaddr) bool {
	ip, err := manet.ToIP(a)
	return err == nil && ip.IsUnspecified()
}
