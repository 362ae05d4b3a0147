package content

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/ipfs/boxo/bitswap"
	bsmsg "github.com/ipfs/boxo/bitswap/message"
	bsnet "github.com/ipfs/boxo/bitswap/network/bsnet"
	"github.com/ipfs/boxo/blockservice"
	"github.com/ipfs/boxo/blockstore"
	"github.com/ipfs/boxo/exchange/offline"
	"github.com/ipfs/boxo/ipld/merkledag"
	pin "github.com/ipfs/boxo/pinning/pinner"
	"github.com/ipfs/boxo/pinning/pinner/dspinner"
	blocks "github.com/ipfs/go-block-format"
	"github.com/ipfs/go-cid"
	ds "github.com/ipfs/go-datastore"
	ipld "github.com/ipfs/go-ipld-format"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
	"github.com/libp2p/go-libp2p/core/routing"
	mh "github.com/multiformats/go-multihash"
)

// Config configures a Store. Zero values are working defaults.
type Config struct {
	// Datastore holds blocks and pins; required (the node opens pebble).
	Datastore ds.Batching
	// BlocksDir holds blocks of 64 KiB and more as one file each, written
	// once (see flatStore); empty means the directory OpenDatastore made
	// beside a datastore it opened, or, for any other datastore, none:
	// every block in Datastore.
	BlocksDir string
	// Routing finds and announces providers (the DHT); nil means
	// connected peers only.
	Routing routing.ContentRouting
	// FindTimeout bounds the search for providers; zero means 30 s.
	FindTimeout time.Duration
	// FirstBlockTimeout bounds the wait for the root block; zero means 60 s.
	FirstBlockTimeout time.Duration
	// StallTimeout fails a fetch that receives no block for so long; zero means 60 s.
	StallTimeout time.Duration
	// HealAfter is how long a fetch goes without a block before it
	// reconnects peers that bitswap lost track of (see heal); zero means
	// 2 s, negative never.
	HealAfter time.Duration
	// MaxDAGBytes refuses DAGs whose blocks, or whose files as written
	// (every repeated link counted again), exceed this, each link a walk
	// follows costing LinkCost on top; zero means 64 GiB.
	MaxDAGBytes int64
	// MaxDepth refuses DAGs deeper than this; zero means 64.
	MaxDepth int
	// ResultTTL is how long a pin made by Add with AddOptions.Result
	// lasts (a job's outputs) before it is removed and its blocks
	// collected, unless Pin is called for the root; zero means 7 days,
	// negative forever.
	ResultTTL time.Duration
	// SweepInterval is how often expired pins are looked for; zero means
	// 10 minutes, negative never (SweepExpired only).
	SweepInterval time.Duration
	// Now is the clock for pin expiry; nil means time.Now (tests inject one).
	Now func() time.Time
	// ReprovideInterval re-announces pinned roots; zero means 12 h.
	ReprovideInterval time.Duration
	// Logger is the parent logger; nil means slog.Default().
	Logger *slog.Logger
	// DirectIO moves block files, and the files a Get writes, between our
	// buffers and the disk with O_DIRECT instead of through the page cache
	// (see direct.go). Off by default: the page cache lets a transfer run
	// at memory speed and writes back behind it, where O_DIRECT holds every
	// byte to the device's rate. Worth turning on where the device outruns
	// the kernel's page handling and CPU is what is short.
	DirectIO bool
}

// Store is the block service of one node.
type Store struct {
	cfg   Config
	log   *slog.Logger
	bs    blockstore.GCBlockstore
	flat  *flatStore // nil when every block is in the datastore
	bswap *bitswap.Bitswap
	// notifiee reports the disconnection of peers adopted at start.
	notifiee network.Notifiee
	offline  blockservice.BlockService
	dag      ipld.DAGService // fetches from the network
	local    ipld.DAGService // never leaves this node
	links    ipld.DAGService // local, but raw blocks are checked for, not read
	pins     pin.Pinner
	routing  routing.ContentRouting
	host     host.Host
	cancel   context.CancelFunc
	senders  senders
}

// New starts bitswap on h over the blockstore in cfg.Datastore.
func New(ctx context.Context, h host.Host, cfg Config) (*Store, error) {
	if cfg.Datastore == nil {
		return nil, errors.New("content: no datastore")
	}
	if cfg.FindTimeout == 0 {
		cfg.FindTimeout = 30 * time.Second
	}
	if cfg.FirstBlockTimeout == 0 {
		cfg.FirstBlockTimeout = 60 * time.Second
	}
	if cfg.HealAfter == 0 {
		cfg.HealAfter = 2 * time.Second
	}
	if cfg.StallTimeout == 0 {
		cfg.StallTimeout = 60 * time.Second
	}
	if cfg.MaxDAGBytes == 0 {
		cfg.MaxDAGBytes = 64 << 30
	}
	if cfg.MaxDepth == 0 {
		cfg.MaxDepth = 64
	}
	if cfg.ReprovideInterval == 0 {
		cfg.ReprovideInterval = 12 * time.Hour
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.ResultTTL == 0 {
		cfg.ResultTTL = 7 * 24 * time.Hour
	}
	if cfg.SweepInterval == 0 {
		cfg.SweepInterval = 10 * time.Minute
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	ctx, cancel := context.WithCancel(ctx)
	s := &Store{cfg: cfg, log: cfg.Logger.With("component", "content"), routing: cfg.Routing, cancel: cancel}
	// Identity CIDs hold their data inline; the idstore answers them
	// without a lookup, as Kubo does.
	var base blockstore.Blockstore = blockstore.NewBlockstore(cfg.Datastore) // keys under /blocks, as Kubo
	if cfg.BlocksDir == "" {
		if d, ok := blockDirs.Load(cfg.Datastore); ok {
			cfg.BlocksDir = d.(string)
		}
	}
	recovered := 0
	if cfg.BlocksDir != "" {
		f, removed, err := openFlatStore(cfg.BlocksDir, base, cfg.DirectIO, s.log)
		if err != nil {
			cancel()
			return nil, err
		}
		s.flat, base, recovered = f, f, removed
	}
	s.bs = blockstore.NewGCBlockstore(blockstore.NewIdStore(base), blockstore.NewGCLocker())
	var finder routing.ContentDiscovery = noFinder{}
	if cfg.Routing != nil {
		finder = cfg.Routing
	}
	// Bitswap announces nothing itself; Add and ImportCAR provide roots.
	// A session asks its peers again, and searches for providers again,
	// every RebroadcastDelay: the default minute is too long when a
	// provider record lands a moment after our first search.
	s.bswap = bitswap.New(ctx, bsnet.NewFromIpfsHost(h), finder, s.bs,
		bitswap.RebroadcastDelay(3*time.Second),
		// The server's default keeps 1 MiB in flight per peer: with 1 MiB
		// chunks that is one block per round trip. Keep a window of them.
		bitswap.MaxOutstandingBytesPerPeer(32<<20),
		// Which peer sent each block, for a fetch's count of its sources.
		bitswap.WithTracer(&s.senders),
	)
	s.host = h
	s.adoptConnected()
	s.offline = blockservice.New(s.bs, offline.Exchange(s.bs))
	s.dag = merkledag.NewDAGService(blockservice.New(s.bs, s.bswap))
	s.local = merkledag.NewDAGService(s.offline)
	s.links = linksOnly{s.local, s.bs}
	pins, err := dspinner.New(ctx, cfg.Datastore, s.links) // keys under /pins, as Kubo
	if err != nil {
		cancel()
		s.bswap.Close()
		if s.flat != nil {
			s.flat.Close()
		}
		return nil, fmt.Errorf("content: pinner: %w", err)
	}
	s.pins = pins
	if recovered > 0 {
		go s.refetchIncomplete(ctx)
	}
	go s.reprovide(ctx)
	if cfg.SweepInterval > 0 {
		go s.sweepLoop(ctx)
	}
	return s, nil
}

// Close stops bitswap and the reprovider and syncs the block files.
func (s *Store) Close() error {
	s.cancel()
	s.host.Network().StopNotify(s.notifiee)
	err := s.bswap.Close()
	if s.flat != nil {
		if ferr := s.flat.Close(); err == nil {
			err = ferr
		}
	}
	return err
}

// linksOnly is the local DAG for walks that need only each node's links
// (pinning, completeness, GC): a raw block has none, so it is looked for
// (a stat) instead of read, and pinning a file does not read all of it
// back from disk.
type linksOnly struct {
	ipld.DAGService
	bs blockstore.Blockstore
}

func (l linksOnly) Get(ctx context.Context, c cid.Cid) (ipld.Node, error) {
	if c.Type() != cid.Raw || c.Prefix().MhType == mh.IDENTITY {
		return l.DAGService.Get(ctx, c)
	}
	has, err := l.bs.Has(ctx, c)
	if err != nil {
		return nil, err
	}
	if !has {
		return nil, ipld.ErrNotFound{Cid: c}
	}
	b, err := blocks.NewBlockWithCid(nil, c) // never read: RawData is empty
	if err != nil {
		return nil, err
	}
	return &merkledag.RawNode{Block: b}, nil
}

func (l linksOnly) GetMany(ctx context.Context, cs []cid.Cid) <-chan *ipld.NodeOption {
	out := make(chan *ipld.NodeOption, len(cs))
	go func() {
		defer close(out)
		for _, c := range cs {
			nd, err := l.Get(ctx, c)
			select {
			case out <- &ipld.NodeOption{Node: nd, Err: err}:
			case <-ctx.Done():
				return
			}
		}
	}()
	return out
}

// refetchIncomplete runs after a crash recovery removed blocks: each pin
// that lost one is logged and fetched again from whoever has it.
func (s *Store) refetchIncomplete(ctx context.Context) {
	bad, err := s.Verify(ctx)
	if err != nil {
		s.log.Error("check pins after crash recovery", "err", err)
		return
	}
	for _, root := range bad {
		s.log.Error("pin lost blocks in a crash; fetching them again", "cid", root)
		if _, err := s.Fetch(ctx, root, nil); err != nil {
			s.log.Error("fetch again after crash", "cid", root, "err", err)
			continue
		}
		s.log.Info("pin complete again", "cid", root)
	}
}

// Verify lists the pins whose DAG is not all here (a block lost in a
// crash, or removed by hand); fetching such a root completes it again.
func (s *Store) Verify(ctx context.Context) ([]cid.Cid, error) {
	pins, err := s.Pins(ctx)
	if err != nil {
		return nil, err
	}
	var bad []cid.Cid
	for _, p := range pins {
		if err := s.complete(ctx, p); err != nil {
			if ctx.Err() != nil {
				return bad, ctx.Err()
			}
			bad = append(bad, p)
		}
	}
	return bad, nil
}

type noFinder struct{}

func (noFinder) FindProvidersAsync(ctx context.Context, c cid.Cid, n int) <-chan peer.AddrInfo {
	ch := make(chan peer.AddrInfo)
	close(ch)
	return ch
}

// adoptConnected tells bitswap of the peers connected before it started:
// it learns of connections only from events, so without this a peer dialed
// earlier (a bootstrap peer, an inbound dial during start-up) is never asked
// for a block until it reconnects. Bitswap's own bookkeeping ignores the
// disconnection of a peer it never saw connect, so a notifiee reports that.
func (s *Store) adoptConnected() {
	adopted := map[peer.ID]bool{}
	var mu sync.Mutex
	s.notifiee = &network.NotifyBundle{
		DisconnectedF: func(n network.Network, c network.Conn) {
			p := c.RemotePeer()
			mu.Lock()
			gone := adopted[p] && n.Connectedness(p) != network.Connected
			if gone {
				delete(adopted, p)
			}
			mu.Unlock()
			if gone {
				s.bswap.PeerDisconnected(p)
			}
		},
	}
	s.host.Network().Notify(s.notifiee)
	for _, p := range s.host.Network().Peers() {
		if s.host.Network().Connectedness(p) != network.Connected {
			continue
		}
		mu.Lock()
		adopted[p] = true
		mu.Unlock()
		s.bswap.PeerConnected(p)
	}
}

// bitswapProtocols are the standard IDs; a peer speaking any is a bitswap peer.
var bitswapProtocols = []protocol.ID{"/ipfs/bitswap/1.2.0", "/ipfs/bitswap/1.1.0", "/ipfs/bitswap/1.0.0", "/ipfs/bitswap"}

// heal re-announces connected bitswap peers that bitswap lost track of.
// Seen here (boxo v0.41): when two nodes dial each other at once, bitswap's
// connection-event bookkeeping can end up marking a connected peer
// disconnected, after which no want ever reaches it and a fetch from it
// hangs. Reconnecting gives bitswap a fresh connection event.
func (s *Store) heal(ctx context.Context) int {
	st, err := s.bswap.Stat()
	if err != nil {
		return 0
	}
	known := make(map[string]bool, len(st.Peers))
	for _, p := range st.Peers {
		known[p] = true
	}
	healed := 0
	for _, p := range s.host.Network().Peers() {
		if known[p.String()] {
			continue
		}
		if ok, _ := s.host.Peerstore().SupportsProtocols(p, bitswapProtocols...); len(ok) == 0 {
			continue
		}
		ai := s.host.Peerstore().PeerInfo(p)
		s.log.Info("bitswap lost a connected peer; reconnecting", "peer_id", p)
		_ = s.host.Network().ClosePeer(p)
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		if err := s.host.Connect(cctx, ai); err == nil {
			healed++
		}
		cancel()
	}
	return healed
}

// senders remembers which peer sent each recent block, so that a fetch can
// say how many peers it is fetching from (a session spreads its wants over
// every peer that has the blocks). It holds at most maxSenders entries:
// blocks nobody asked about are forgotten rather than kept.
type senders struct {
	mu sync.Mutex
	m  map[string]peer.ID
}

const maxSenders = 8192

func (t *senders) MessageReceived(p peer.ID, msg bsmsg.BitSwapMessage) {
	blks := msg.Blocks()
	if len(blks) == 0 {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.m == nil || len(t.m) > maxSenders {
		t.m = make(map[string]peer.ID)
	}
	for _, b := range blks {
		t.m[b.Cid().KeyString()] = p
	}
}

func (t *senders) MessageSent(peer.ID, bsmsg.BitSwapMessage) {}

// take returns and forgets the sender of c.
func (t *senders) take(c cid.Cid) (peer.ID, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	p, ok := t.m[c.KeyString()]
	delete(t.m, c.KeyString())
	return p, ok
}

// BitswapStat is bitswap's running totals (blocks and bytes in and out),
// for the daemon's metrics.
func (s *Store) BitswapStat() (*bitswap.Stat, error) { return s.bswap.Stat() }
