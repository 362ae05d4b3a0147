package overlay

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aixblock/aixblock/p2p"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
	ma "github.com/multiformats/go-multiaddr"
)

// JobNetName is the job network protocol under the network's prefix.
const JobNetName = "jobnet/1"

// JobNetProtocol is /aixblock/<network>/jobnet/1.
func JobNetProtocol(network string) protocol.ID { return p2p.ProtocolID(network, JobNetName) }

// Prefix is every job network's subnet. Each rank has a network namespace
// of its own, so two jobs' subnets never meet and all jobs share it.
var Prefix = netip.MustParsePrefix("10.77.0.0/16")

// MaxRanks bounds a job network's node ranks (addresses 10.77.0.1 up).
const MaxRanks = 4096

// RankAddr is node rank r's address on its job's network.
func RankAddr(r int) netip.Addr {
	n := uint32(r + 1)
	return netip.AddrFrom4([4]byte{10, 77, byte(n >> 8), byte(n)})
}

// rankOf is the rank at address a, if a is one.
func rankOf(a netip.Addr) (int, bool) {
	if !a.Is4() || !Prefix.Contains(a) {
		return 0, false
	}
	b := a.As4()
	r := int(b[2])<<8 | int(b[3]) - 1
	return r, r >= 0 && r < MaxRanks
}

const (
	maxNetID      = 64
	maxPacket     = 65535
	headerTimeout = 3 * time.Second
	sendQueue     = 1024
	streamBuf     = 256 << 10
)

// parsePacket reads an IPv4 packet's source and destination; anything
// else (IPv6, a short or inconsistent header) is an error.
func parsePacket(p []byte) (src, dst netip.Addr, err error) {
	if len(p) < 20 {
		return src, dst, errors.New("packet: shorter than an IPv4 header")
	}
	if p[0]>>4 != 4 {
		return src, dst, fmt.Errorf("packet: IP version %d, want 4", p[0]>>4)
	}
	ihl := int(p[0]&0x0f) * 4
	total := int(binary.BigEndian.Uint16(p[2:4]))
	if ihl < 20 || total < ihl || total > len(p) {
		return src, dst, errors.New("packet: inconsistent IPv4 lengths")
	}
	return netip.AddrFrom4([4]byte(p[12:16])), netip.AddrFrom4([4]byte(p[16:20])), nil
}

// JobNet carries the packets of distributed jobs' private networks between
// the daemons of their ranks. See the package doc.
type JobNet struct {
	h   host.Host
	id  protocol.ID
	log *slog.Logger

	mu     sync.Mutex
	nets   map[string]*jobNet
	closed bool
}

// NewJobNet registers the job network protocol's handler on h.
func NewJobNet(h host.Host, network string, log *slog.Logger) *JobNet {
	if log == nil {
		log = slog.Default()
	}
	s := &JobNet{h: h, id: JobNetProtocol(network), log: log.With("component", "jobnet"), nets: map[string]*jobNet{}}
	h.SetStreamHandler(s.id, s.handle)
	return s
}

// Close ends every job network here.
func (s *JobNet) Close() error {
	s.h.RemoveStreamHandler(s.id)
	s.mu.Lock()
	s.closed = true
	nets := s.nets
	s.nets = map[string]*jobNet{}
	s.mu.Unlock()
	for _, n := range nets {
		n.close()
	}
	return nil
}

// jobNet is one job's network on this daemon: its members (a provider per
// node rank) and the ranks that live here.
type jobNet struct {
	s       *JobNet
	id      string
	members []peer.ID
	ctx     context.Context
	cancel  context.CancelFunc

	mu      sync.Mutex
	local   map[int]*tun
	senders map[peer.ID]*sender
	inbound map[network.Stream]bool
	tx, rx  map[peer.ID]*counter
	dropped atomic.Uint64
}

type counter struct{ packets, bytes atomic.Uint64 }

// Rank is a node rank's place on its job's network; Close takes it off.
type Rank struct {
	n    *jobNet
	rank int
	t    *tun
	once sync.Once
}

// Join puts node rank rank of job network id into the network namespace at
// nsPath: a TUN device named IfName with the rank's address, its packets
// carried to members[r] for each other rank r. Only those members may send
// this network packets, and only from their own ranks' addresses. A second
// rank of the same network on this daemon must name the same members.
func (s *JobNet) Join(id string, members []peer.ID, rank int, nsPath string) (*Rank, error) {
	switch {
	case id == "" || len(id) > maxNetID:
		return nil, fmt.Errorf("job network id %q: want 1 to %d characters", id, maxNetID)
	case len(members) < 1 || len(members) > MaxRanks:
		return nil, fmt.Errorf("job network %s: %d members, want 1 to %d", id, len(members), MaxRanks)
	case rank < 0 || rank >= len(members):
		return nil, fmt.Errorf("job network %s: rank %d of %d", id, rank, len(members))
	case members[rank] != s.h.ID():
		return nil, fmt.Errorf("job network %s: rank %d belongs to %s, not this node", id, rank, members[rank])
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil, errors.New("job network: shutting down")
	}
	n := s.nets[id]
	if n == nil {
		ctx, cancel := context.WithCancel(context.Background())
		n = &jobNet{s: s, id: id, members: append([]peer.ID(nil), members...), ctx: ctx, cancel: cancel,
			local: map[int]*tun{}, senders: map[peer.ID]*sender{}, inbound: map[network.Stream]bool{},
			tx: map[peer.ID]*counter{}, rx: map[peer.ID]*counter{}}
		for _, p := range members {
			n.tx[p], n.rx[p] = &counter{}, &counter{}
		}
		s.nets[id] = n
	} else if !samePeers(n.members, members) {
		s.mu.Unlock()
		return nil, fmt.Errorf("job network %s exists here with other members", id)
	}
	n.mu.Lock()
	_, taken := n.local[rank]
	if !taken {
		n.local[rank] = nil // reserved while the device is made
	}
	n.mu.Unlock()
	s.mu.Unlock()
	if taken {
		return nil, fmt.Errorf("job network %s: rank %d already joined here", id, rank)
	}
	t, err := newTUN(nsPath, RankAddr(rank), Prefix)
	if err != nil {
		s.leave(n, rank)
		return nil, err
	}
	n.mu.Lock()
	n.local[rank] = t
	n.mu.Unlock()
	r := &Rank{n: n, rank: rank, t: t}
	go n.readLocal(rank, t)
	s.log.Info("rank joined its job network", "net", id, "rank", rank, "addr", RankAddr(rank), "members", len(members))
	return r, nil
}

func samePeers(a, b []peer.ID) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// Addr is the rank's address.
func (r *Rank) Addr() netip.Addr { return RankAddr(r.rank) }

// Close takes the rank off its network; the last rank here ends the
// network's streams.
func (r *Rank) Close() error {
	r.once.Do(func() {
		r.t.Close()
		r.n.s.leave(r.n, r.rank)
	})
	return nil
}

func (s *JobNet) leave(n *jobNet, rank int) {
	s.mu.Lock()
	n.mu.Lock()
	delete(n.local, rank)
	empty := len(n.local) == 0
	n.mu.Unlock()
	if empty && s.nets[n.id] == n {
		delete(s.nets, n.id)
	}
	s.mu.Unlock()
	if empty {
		n.close()
	}
}

func (n *jobNet) close() {
	n.cancel()
	n.mu.Lock()
	for st := range n.inbound {
		st.Reset()
	}
	for _, t := range n.local {
		if t != nil {
			t.Close()
		}
	}
	n.mu.Unlock()
}

func (n *jobNet) isMember(p peer.ID) bool {
	for _, m := range n.members {
		if m == p {
			return true
		}
	}
	return false
}

// readLocal carries the packets a local rank sends.
func (n *jobNet) readLocal(rank int, t *tun) {
	own := RankAddr(rank)
	for {
		bp := packetPool.Get().(*[]byte)
		k, err := t.Read((*bp)[2:])
		if err != nil {
			packetPool.Put(bp)
			return
		}
		pkt := (*bp)[2 : 2+k]
		src, dst, err := parsePacket(pkt)
		d, ok := rankOf(dst)
		// A rank speaks only as itself and only to its job's ranks: the
		// provider's own addresses, its LAN and the internet have no
		// route from here.
		if err != nil || src != own || !ok || d >= len(n.members) || d == rank {
			n.dropped.Add(1)
			packetPool.Put(bp)
			continue
		}
		to := n.members[d]
		if to == n.s.h.ID() {
			n.mu.Lock()
			lt := n.local[d]
			n.mu.Unlock()
			if lt != nil {
				lt.Write(pkt)
			} else {
				n.dropped.Add(1)
			}
			packetPool.Put(bp)
			continue
		}
		n.sender(to).send(bp, k)
	}
}

var packetPool = sync.Pool{New: func() any { b := make([]byte, 2+maxPacket); return &b }}

func (n *jobNet) sender(p peer.ID) *sender {
	n.mu.Lock()
	defer n.mu.Unlock()
	sd := n.senders[p]
	if sd == nil {
		sd = &sender{n: n, to: p, ch: make(chan packet, sendQueue), c: n.tx[p]}
		n.senders[p] = sd
		go sd.run()
	}
	return sd
}

type packet struct {
	buf *[]byte
	n   int
}

// sender writes one peer's packets on one stream, flushing when its queue
// runs dry: a burst of packets becomes one write.
type sender struct {
	n  *jobNet
	to peer.ID
	ch chan packet
	c  *counter
}

func (sd *sender) send(bp *[]byte, k int) {
	select {
	case sd.ch <- packet{bp, k}:
	default: // a full queue drops, as a router would; TCP inside recovers
		sd.n.dropped.Add(1)
		packetPool.Put(bp)
	}
}

func (sd *sender) run() {
	ctx := sd.n.ctx
	var (
		st       network.Stream
		w        *bufio.Writer
		relayed  bool
		checked  time.Time
		failedAt time.Time
	)
	closeStream := func() {
		if st != nil {
			st.Reset()
			st, w = nil, nil
		}
	}
	defer closeStream()
	for {
		var p packet
		select {
		case <-ctx.Done():
			return
		case p = <-sd.ch:
		}
		// A stream on a relayed connection moves once a direct one
		// exists (hole punching may finish after the first packets).
		if st != nil && relayed && time.Since(checked) > time.Second {
			checked = time.Now()
			if hasDirect(sd.n.s.h, sd.to) {
				closeStream()
			}
		}
		if st == nil && time.Since(failedAt) > time.Second {
			var err error
			st, err = sd.open(ctx)
			if err != nil {
				failedAt = time.Now()
				sd.n.s.log.Debug("job network: peer not reached", "net", sd.n.id, "peer", sd.to, "err", err)
			} else {
				w = bufio.NewWriterSize(st, streamBuf)
				relayed = isRelayed(st.Conn())
				checked = time.Now()
			}
		}
		if st == nil {
			sd.n.dropped.Add(1)
			packetPool.Put(p.buf)
			continue
		}
		err := sd.write(w, p)
		for err == nil && len(sd.ch) > 0 {
			err = sd.write(w, <-sd.ch)
		}
		if err == nil {
			err = w.Flush()
		}
		if err != nil {
			closeStream()
		}
	}
}

func (sd *sender) write(w *bufio.Writer, p packet) error {
	b := (*p.buf)[:2+p.n]
	binary.BigEndian.PutUint16(b, uint16(p.n))
	_, err := w.Write(b)
	packetPool.Put(p.buf)
	if err == nil {
		sd.c.packets.Add(1)
		sd.c.bytes.Add(uint64(p.n))
	}
	return err
}

func (sd *sender) open(ctx context.Context) (network.Stream, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	// A relay that opts in to job traffic gives unlimited circuits; one
	// with libp2p's default limits ends them, and the stream is opened
	// again on the next packets.
	ctx = network.WithAllowLimitedConn(ctx, "job network")
	st, err := sd.n.s.h.NewStream(ctx, sd.to, sd.n.s.id)
	if err != nil {
		return nil, err
	}
	hdr := append([]byte{1, byte(len(sd.n.id))}, sd.n.id...)
	if _, err := st.Write(hdr); err != nil {
		st.Reset()
		return nil, err
	}
	return st, nil
}

// handle is a member's stream of packets for one job network.
func (s *JobNet) handle(st network.Stream) {
	from := st.Conn().RemotePeer()
	st.SetReadDeadline(time.Now().Add(headerTimeout))
	id, err := readNetHeader(st)
	if err != nil {
		s.log.Debug("job network: bad header", "peer", from, "err", err)
		st.Reset()
		return
	}
	s.mu.Lock()
	n := s.nets[id]
	s.mu.Unlock()
	if n == nil || !n.isMember(from) {
		// No network here by that id, or the peer is not one of its
		// providers: a stranger learns nothing more than the reset.
		s.log.Debug("job network: stream refused", "peer", from, "net", id)
		st.Reset()
		return
	}
	st.CloseWrite()
	st.SetReadDeadline(time.Time{})
	n.mu.Lock()
	n.inbound[st] = true
	n.mu.Unlock()
	defer func() {
		n.mu.Lock()
		delete(n.inbound, st)
		n.mu.Unlock()
		st.Reset()
	}()
	br := bufio.NewReaderSize(st, streamBuf)
	buf := make([]byte, maxPacket)
	var lb [2]byte
	rx := n.rx[from]
	for {
		if _, err := io.ReadFull(br, lb[:]); err != nil {
			return
		}
		k := int(binary.BigEndian.Uint16(lb[:]))
		if _, err := io.ReadFull(br, buf[:k]); err != nil {
			return
		}
		if !n.deliver(from, buf[:k]) {
			n.dropped.Add(1)
			continue
		}
		rx.packets.Add(1)
		rx.bytes.Add(uint64(k))
	}
}

// deliver writes a member's packet to the local rank it is for, if it
// comes from a rank that member hosts.
func (n *jobNet) deliver(from peer.ID, pkt []byte) bool {
	src, dst, err := parsePacket(pkt)
	if err != nil {
		return false
	}
	s, ok1 := rankOf(src)
	d, ok2 := rankOf(dst)
	if !ok1 || !ok2 || s >= len(n.members) || n.members[s] != from {
		return false // spoofed: a member speaks only for its own ranks
	}
	n.mu.Lock()
	t := n.local[d]
	n.mu.Unlock()
	if t == nil {
		return false
	}
	_, err = t.Write(pkt)
	return err == nil
}

// readNetHeader reads a stream's opening: version 1, the id's length, the id.
func readNetHeader(r io.Reader) (string, error) {
	var h [2]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		return "", fmt.Errorf("job network header: %w", err)
	}
	if h[0] != 1 {
		return "", fmt.Errorf("job network header: version %d, want 1", h[0])
	}
	if h[1] == 0 || h[1] > maxNetID {
		return "", fmt.Errorf("job network header: id of %d bytes, want 1 to %d", h[1], maxNetID)
	}
	id := make([]byte, h[1])
	if _, err := io.ReadFull(r, id); err != nil {
		return "", fmt.Errorf("job network header: %w", err)
	}
	for _, c := range id {
		if c <= ' ' || c > '~' {
			return "", errors.New("job network header: id is not printable ASCII")
		}
	}
	return string(id), nil
}

func isRelayed(c network.Conn) bool {
	_, err := c.RemoteMultiaddr().ValueForProtocol(ma.P_CIRCUIT)
	return err == nil
}

func hasDirect(h host.Host, p peer.ID) bool {
	for _, c := range h.Network().ConnsToPeer(p) {
		if !isRelayed(c) {
			return true
		}
	}
	return false
}

// Path is how this daemon reaches p now: "direct", "relayed", or "" with
// no connection.
func Path(h host.Host, p peer.ID) string {
	conns := h.Network().ConnsToPeer(p)
	if len(conns) == 0 {
		return ""
	}
	if hasDirect(h, p) {
		return "direct"
	}
	return "relayed"
}

// PeerStat is one member's traffic on a job network, as seen here.
type PeerStat struct {
	Rank      int    `json:"rank"`
	Peer      string `json:"peer"`
	Path      string `json:"path,omitempty"`
	TxPackets uint64 `json:"tx_packets"`
	TxBytes   uint64 `json:"tx_bytes"`
	RxPackets uint64 `json:"rx_packets"`
	RxBytes   uint64 `json:"rx_bytes"`
}

// NetStat is a job network as this daemon sees it.
type NetStat struct {
	ID      string     `json:"id"`
	Local   []int      `json:"local_ranks"`
	Peers   []PeerStat `json:"peers"`
	Dropped uint64     `json:"dropped"`
}

// Stat is job network id's state here; false when it has none.
func (s *JobNet) Stat(id string) (NetStat, bool) {
	s.mu.Lock()
	n := s.nets[id]
	s.mu.Unlock()
	if n == nil {
		return NetStat{}, false
	}
	st := NetStat{ID: id, Dropped: n.dropped.Load()}
	n.mu.Lock()
	for r := range n.members {
		if _, ok := n.local[r]; ok {
			st.Local = append(st.Local, r)
		}
	}
	n.mu.Unlock()
	for r, p := range n.members {
		if p == s.h.ID() {
			continue
		}
		tx, rx := n.tx[p], n.rx[p]
		st.Peers = append(st.Peers, PeerStat{Rank: r, Peer: p.String(), Path: Path(s.h, p),
			TxPackets: tx.packets.Load(), TxBytes: tx.bytes.Load(), RxPackets: rx.packets.Load(), RxBytes: rx.bytes.Load()})
	}
	return st, true
}

// Reach connects to every other member of job network id and reports the
// path to each: the gang's reachability check before any rank starts. A
// relayed path is given wait to become direct (hole punching runs on the
// relayed connection's arrival).
func (s *JobNet) Reach(ctx context.Context, members []peer.ID, find func(context.Context, peer.ID), wait time.Duration) (map[peer.ID]string, error) {
	paths := map[peer.ID]string{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	errs := make([]error, len(members))
	for i, p := range members {
		if p == s.h.ID() {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			path := Path(s.h, p)
			if path == "" && find != nil {
				find(ctx, p)
				path = Path(s.h, p)
			}
			if path == "" {
				if err := s.h.Connect(network.WithAllowLimitedConn(ctx, "job network"), peer.AddrInfo{ID: p}); err != nil {
					errs[i] = fmt.Errorf("rank %d's provider %s: %w", i, p, err)
					return
				}
				path = Path(s.h, p)
			}
			if path == "relayed" && s.h.ID() < p {
				// A relayed connection made before this host's hole
				// puncher started (the relay reservation starts both)
				// is never punched: one side of each pair dials again,
				// and the other's puncher acts on the fresh inbound
				// relayed connection.
				for _, c := range s.h.Network().ConnsToPeer(p) {
					if isRelayed(c) {
						c.Close()
					}
				}
				if err := s.h.Connect(network.WithAllowLimitedConn(ctx, "job network"), peer.AddrInfo{ID: p}); err != nil {
					errs[i] = fmt.Errorf("rank %d's provider %s: %w", i, p, err)
					return
				}
				path = Path(s.h, p)
			}
			deadline := time.Now().Add(wait)
			for path == "relayed" && time.Now().Before(deadline) && ctx.Err() == nil {
				time.Sleep(100 * time.Millisecond)
				path = Path(s.h, p)
			}
			mu.Lock()
			paths[p] = path
			mu.Unlock()
		}()
	}
	wg.Wait()
	return paths, errors.Join(errs...)
}
