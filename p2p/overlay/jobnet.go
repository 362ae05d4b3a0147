package overlay

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aixblock/aixblock/p2p"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
	"github.com/libp2p/go-libp2p/p2p/net/swarm"
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
	// sendQueue and queueBytes bound one member's queue: packets, and
	// the bytes of the buffers they hold. netQueueBytes bounds all the
	// members' queues of one job network together.
	sendQueue     = 1024
	queueBytes    = 4 << 20
	netQueueBytes = 32 << 20
	// gatherBytes bounds the small packets gathered into one stream
	// write; a packet of directBytes or more is written as it is.
	gatherBytes = 64 << 10
	directBytes = 8 << 10
	// packetMemory is what a member's inbound stream holds: one packet
	// being read. jobNetMemory, the memory limit of the protocol's
	// resource-manager service (p2p.HandleStream), lets a job network of
	// MaxRanks members each have its stream here; beyond it a member's
	// stream is reset.
	packetMemory = headroom + maxPacket
	jobNetMemory = MaxRanks * packetMemory
)

// Deadlines, variables for tests (a JobNet takes them when made). A
// member that does not take a batch of packets within writeTimeout loses
// its stream (the packets are dropped, as on a dead link). A member's
// inbound stream that carries no packet for inboundIdle is closed; this
// daemon's own stream to a member is closed after outboundIdle with
// nothing to send, and opened again on the next packet.
var (
	writeTimeout = 10 * time.Second
	inboundIdle  = 2 * time.Minute
	outboundIdle = time.Minute
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

	writeTimeout, inboundIdle, outboundIdle time.Duration

	mu     sync.Mutex
	nets   map[string]*jobNet
	closed bool
}

// NewJobNet registers the job network protocol's handler on h.
func NewJobNet(h host.Host, network string, log *slog.Logger) *JobNet {
	if log == nil {
		log = slog.Default()
	}
	s := &JobNet{h: h, id: JobNetProtocol(network), log: log.With("component", "jobnet"), nets: map[string]*jobNet{},
		writeTimeout: writeTimeout, inboundIdle: inboundIdle, outboundIdle: outboundIdle}
	p2p.HandleStream(h, s.id, jobNetMemory, s.log, s.handle)
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
	inbound map[peer.ID]network.Stream // one per member
	tx, rx  map[peer.ID]*counter
	dropped atomic.Uint64
	queued  atomic.Int64 // bytes queued to all members
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
	return s.join(id, members, rank, func() (*tun, error) { return newTUN(nsPath, RankAddr(rank), Prefix) })
}

// Rejoin is Join for a rank already on its network when a daemon before
// this one (the same peer, restarted) went away: it attaches to the device
// that daemon left in the namespace at nsPath, which must hold the rank's
// address, so the rank's connections go on through the outage. The other
// members' senders reach this daemon again on its new connections.
func (s *JobNet) Rejoin(id string, members []peer.ID, rank int, nsPath string) (*Rank, error) {
	return s.join(id, members, rank, func() (*tun, error) { return openTUN(nsPath, RankAddr(rank)) })
}

// join checks the membership, reserves the rank and puts it on the
// network with the device open makes.
func (s *JobNet) join(id string, members []peer.ID, rank int, open func() (*tun, error)) (*Rank, error) {
	if err := s.checkJoin(id, members, rank); err != nil {
		return nil, err
	}
	n, err := s.reserve(id, members, rank)
	if err != nil {
		return nil, err
	}
	t, err := open()
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

func (s *JobNet) checkJoin(id string, members []peer.ID, rank int) error {
	switch {
	case id == "" || len(id) > maxNetID:
		return fmt.Errorf("job network id %q: want 1 to %d characters", id, maxNetID)
	case len(members) < 1 || len(members) > MaxRanks:
		return fmt.Errorf("job network %s: %d members, want 1 to %d", id, len(members), MaxRanks)
	case rank < 0 || rank >= len(members):
		return fmt.Errorf("job network %s: rank %d of %d", id, rank, len(members))
	case members[rank] != s.h.ID():
		return fmt.Errorf("job network %s: rank %d belongs to %s, not this node", id, rank, members[rank])
	}
	return nil
}

// reserve finds or makes network id and holds rank's place on it while
// its device is made.
func (s *JobNet) reserve(id string, members []peer.ID, rank int) (*jobNet, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, errors.New("job network: shutting down")
	}
	n := s.nets[id]
	if n == nil {
		ctx, cancel := context.WithCancel(context.Background())
		n = &jobNet{s: s, id: id, members: append([]peer.ID(nil), members...), ctx: ctx, cancel: cancel,
			local: map[int]*tun{}, senders: map[peer.ID]*sender{}, inbound: map[peer.ID]network.Stream{},
			tx: map[peer.ID]*counter{}, rx: map[peer.ID]*counter{}}
		for _, p := range members {
			n.tx[p], n.rx[p] = &counter{}, &counter{}
		}
		s.nets[id] = n
	} else if !samePeers(n.members, members) {
		return nil, fmt.Errorf("job network %s exists here with other members", id)
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if _, taken := n.local[rank]; taken {
		return nil, fmt.Errorf("job network %s: rank %d already joined here", id, rank)
	}
	n.local[rank] = nil // reserved while the device is made
	return n, nil
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

// Close takes the rank off its network and removes its device; the last
// rank here ends the network's streams.
func (r *Rank) Close() error {
	var err error
	r.once.Do(func() {
		err = r.t.remove()
		r.n.s.leave(r.n, r.rank)
	})
	if err != nil {
		return fmt.Errorf("job network %s: remove rank %d's device: %w", r.n.id, r.rank, err)
	}
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

// close ends the network: its devices, its streams both ways, its
// senders (which drop what they queued). Nothing of it stays running.
func (n *jobNet) close() {
	n.cancel()
	n.mu.Lock()
	for _, st := range n.inbound {
		st.Reset()
	}
	for _, t := range n.local {
		if t != nil {
			t.Close()
		}
	}
	senders := n.senders
	n.senders = map[peer.ID]*sender{}
	n.mu.Unlock()
	for _, sd := range senders {
		sd.abort()
	}
}

func (n *jobNet) isMember(p peer.ID) bool {
	for _, m := range n.members {
		if m == p {
			return true
		}
	}
	return false
}

// readLocal carries the packets a local rank sends. It reads into a
// buffer of the largest size; a packet that fits a smaller class is
// copied into one, so what waits in a queue holds about its own size.
func (n *jobNet) readLocal(rank int, t *tun) {
	own := RankAddr(rank)
	scratch := getBuf(maxPacket)
	defer func() { putBuf(scratch) }()
	for {
		pkt, err := t.readPacket(*scratch)
		if err != nil && !errors.Is(err, errVnet) {
			return
		}
		k := len(pkt)
		src, dst, perr := parsePacket(pkt)
		err = errors.Join(err, perr)
		d, ok := rankOf(dst)
		// A rank speaks only as itself and only to its job's ranks: the
		// provider's own addresses, its LAN and the internet have no
		// route from here.
		if err != nil || src != own || !ok || d >= len(n.members) || d == rank {
			n.dropped.Add(1)
			continue
		}
		to := n.members[d]
		if to == n.s.h.ID() {
			n.mu.Lock()
			lt := n.local[d]
			n.mu.Unlock()
			if lt != nil {
				lt.writePacket((*scratch)[:headroom+k])
			} else {
				n.dropped.Add(1)
			}
			continue
		}
		sd := n.sender(to)
		if sd == nil { // the network is ending
			n.dropped.Add(1)
			continue
		}
		var bp *[]byte
		if classOf(k) == len(bufClasses)-1 {
			bp, scratch = scratch, getBuf(maxPacket)
		} else {
			bp = getBuf(k)
			copy((*bp)[headroom:], pkt)
		}
		if !sd.send(packet{bp, k}) {
			// A full queue drops, as a router would; TCP inside recovers.
			n.dropped.Add(1)
			putBuf(bp)
		}
	}
}

// Packet buffers come in size classes, each with headroom in front of
// the packet (for the device's virtio-net header, and the frame's 2-byte
// length on the wire), one pool per class: a packet is held in the
// smallest class it fits, so a queue of small packets holds small
// buffers.
const headroom = vnetHdrLen

var (
	bufClasses = [...]int{512, 4 << 10, 16 << 10, maxPacket}
	bufPools   [len(bufClasses)]sync.Pool
)

func classOf(k int) int {
	for i, c := range bufClasses {
		if k <= c {
			return i
		}
	}
	return len(bufClasses) - 1
}

// getBuf is a buffer for a packet of k bytes: headroom+class(k) long.
func getBuf(k int) *[]byte {
	c := classOf(k)
	if bp, ok := bufPools[c].Get().(*[]byte); ok {
		return bp
	}
	b := make([]byte, headroom+bufClasses[c])
	return &b
}

func putBuf(bp *[]byte) {
	if bp == nil {
		return
	}
	c := classOf(len(*bp) - headroom)
	if len(*bp) == headroom+bufClasses[c] {
		bufPools[c].Put(bp)
	}
}

// sender is p's queue and goroutine, made on the first packet for it;
// nil once the network is ending.
func (n *jobNet) sender(p peer.ID) *sender {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.ctx.Err() != nil {
		return nil
	}
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
// runs dry: a burst of packets becomes one write. Its queue is bounded in
// packets and in bytes (its own and the network's); a batch the peer does
// not take within writeTimeout ends the stream.
type sender struct {
	n      *jobNet
	to     peer.ID
	ch     chan packet
	c      *counter
	queued atomic.Int64 // bytes of the buffers in ch

	mu     sync.Mutex
	closed bool
	st     network.Stream // the open stream, for abort
}

// send queues p, or reports false when the queue is full or gone; the
// caller then still owns p's buffer.
func (sd *sender) send(p packet) bool {
	size := int64(cap(*p.buf))
	sd.mu.Lock()
	defer sd.mu.Unlock()
	if sd.closed || sd.queued.Load()+size > queueBytes {
		return false
	}
	if sd.n.queued.Add(size) > netQueueBytes {
		sd.n.queued.Add(-size)
		return false
	}
	select {
	case sd.ch <- p:
		sd.queued.Add(size)
		return true
	default:
		sd.n.queued.Add(-size)
		return false
	}
}

// take is the queue's next packet, its bytes released from the budgets.
func (sd *sender) take(p packet) packet {
	size := int64(cap(*p.buf))
	sd.queued.Add(-size)
	sd.n.queued.Add(-size)
	return p
}

// abort resets the stream under a write that may be blocked.
func (sd *sender) abort() {
	sd.mu.Lock()
	if sd.st != nil {
		sd.st.Reset()
	}
	sd.mu.Unlock()
}

func (sd *sender) setStream(st network.Stream) {
	sd.mu.Lock()
	sd.st = st
	sd.mu.Unlock()
}

func (sd *sender) run() {
	ctx := sd.n.ctx
	var (
		st       network.Stream
		w        *frameWriter
		relayed  bool
		checked  time.Time
		failedAt time.Time
	)
	closeStream := func(graceful bool) {
		if st != nil {
			if graceful {
				st.Close()
			} else {
				st.Reset()
			}
			sd.setStream(nil)
			st, w = nil, nil
		}
	}
	idle := time.NewTimer(sd.n.s.outboundIdle)
	defer func() {
		idle.Stop()
		closeStream(false)
		// Nothing is queued after this; what was is dropped.
		sd.mu.Lock()
		sd.closed = true
		sd.mu.Unlock()
		for {
			select {
			case p := <-sd.ch:
				putBuf(sd.take(p).buf)
			default:
				return
			}
		}
	}()
	for {
		var p packet
		select {
		case <-ctx.Done():
			return
		case <-idle.C:
			closeStream(true)
			continue
		case p = <-sd.ch:
			sd.take(p)
		}
		// A stream on a relayed connection moves once a direct one
		// exists (hole punching may finish after the first packets).
		if st != nil && relayed && time.Since(checked) > time.Second {
			checked = time.Now()
			if hasDirect(sd.n.s.h, sd.to) {
				closeStream(false)
			}
		}
		if st == nil && time.Since(failedAt) > time.Second {
			var err error
			st, err = sd.open(ctx)
			if err != nil {
				failedAt = time.Now()
				sd.n.s.log.Debug("job network: peer not reached", "net", sd.n.id, "peer", sd.to, "err", err)
			} else {
				sd.setStream(st)
				if ctx.Err() != nil { // close ran before the stream was known
					closeStream(false)
					putBuf(p.buf)
					return
				}
				w = &frameWriter{w: st, buf: make([]byte, 0, gatherBytes)}
				relayed = isRelayed(st.Conn())
				checked = time.Now()
			}
		}
		if st == nil {
			sd.n.dropped.Add(1)
			putBuf(p.buf)
			continue
		}
		st.SetWriteDeadline(time.Now().Add(sd.n.s.writeTimeout))
		err := sd.write(w, p)
		for err == nil && len(sd.ch) > 0 {
			err = sd.write(w, sd.take(<-sd.ch))
		}
		if err == nil {
			err = w.flush()
		}
		if err != nil {
			// A peer that takes nothing (or is gone) loses its stream;
			// the next packet opens another.
			sd.n.s.log.Debug("job network: stream to peer ended", "net", sd.n.id, "peer", sd.to, "err", err)
			conn := st.Conn()
			closeStream(false)
			sd.dropStale(conn, err)
		}
		idle.Reset(sd.n.s.outboundIdle)
	}
}

// dropStale closes conn, on which a batch timed out, when the peer has
// another connection: a member whose daemon restarted comes back on a new
// connection while the old one may look open for a while (a QUIC one
// until its idle timeout), and the next stream must not go there again.
func (sd *sender) dropStale(conn network.Conn, err error) {
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		return
	}
	if len(sd.n.s.h.Network().ConnsToPeer(sd.to)) > 1 {
		sd.n.s.log.Debug("job network: connection to peer dropped after a write timed out", "net", sd.n.id, "peer", sd.to)
		conn.Close()
	}
}

func (sd *sender) write(w *frameWriter, p packet) error {
	b := (*p.buf)[headroom-2 : headroom+p.n]
	binary.BigEndian.PutUint16(b, uint16(p.n))
	err := w.write(b)
	putBuf(p.buf)
	if err == nil {
		sd.c.packets.Add(1)
		sd.c.bytes.Add(uint64(p.n))
	}
	return err
}

// frameWriter gathers small frames into one stream write and hands a
// large one to the stream as it is, after what it gathered: the stream
// copies what it is given, so copying a 64 KiB packet here first would
// be a copy for nothing.
type frameWriter struct {
	w   io.Writer
	buf []byte
}

func (fw *frameWriter) write(frame []byte) error {
	if len(frame) >= directBytes {
		if err := fw.flush(); err != nil {
			return err
		}
		_, err := fw.w.Write(frame)
		return err
	}
	if len(fw.buf)+len(frame) > cap(fw.buf) {
		if err := fw.flush(); err != nil {
			return err
		}
	}
	fw.buf = append(fw.buf, frame...)
	return nil
}

func (fw *frameWriter) flush() error {
	if len(fw.buf) == 0 {
		return nil
	}
	_, err := fw.w.Write(fw.buf)
	fw.buf = fw.buf[:0]
	return err
}

func (sd *sender) open(ctx context.Context) (network.Stream, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	// A relayed connection is a limited one: a job relay gives circuits
	// to the peers of the job networks it serves, within their budgets;
	// one with libp2p's default limits ends them. Either way a circuit
	// that ends is opened again on the next packets.
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
	release, err := p2p.Reserve(st, packetMemory)
	if err != nil {
		s.log.Debug("job network: stream refused", "peer", from, "net", id, "err", err)
		st.Reset()
		return
	}
	defer release()
	st.CloseWrite()
	// One inbound stream per member: a newer one replaces the older
	// (a member that lost its stream opens another).
	n.mu.Lock()
	if n.ctx.Err() != nil {
		n.mu.Unlock()
		st.Reset()
		return
	}
	if old := n.inbound[from]; old != nil {
		old.Reset()
	}
	n.inbound[from] = st
	n.mu.Unlock()
	defer func() {
		n.mu.Lock()
		if n.inbound[from] == st {
			delete(n.inbound, from)
		}
		n.mu.Unlock()
		st.Reset()
	}()
	// Nothing is buffered here beyond the packet being read (the stream
	// buffers what has arrived); a stream with no packet for inboundIdle
	// is closed.
	var lb [2]byte
	rx := n.rx[from]
	armed := time.Now()
	st.SetReadDeadline(armed.Add(s.inboundIdle))
	for {
		if _, err := io.ReadFull(st, lb[:]); err != nil {
			return
		}
		k := int(binary.BigEndian.Uint16(lb[:]))
		bp := getBuf(k)
		if _, err := io.ReadFull(st, (*bp)[headroom:headroom+k]); err != nil {
			putBuf(bp)
			return
		}
		ok := n.deliver(from, (*bp)[:headroom+k])
		putBuf(bp)
		if now := time.Now(); now.Sub(armed) > time.Second {
			armed = now
			st.SetReadDeadline(now.Add(s.inboundIdle))
		}
		if !ok {
			n.dropped.Add(1)
			continue
		}
		rx.packets.Add(1)
		rx.bytes.Add(uint64(k))
	}
}

// deliver writes a member's packet, b[headroom:], to the local rank it is
// for, if it comes from a rank that member hosts.
func (n *jobNet) deliver(from peer.ID, b []byte) bool {
	src, dst, err := parsePacket(b[headroom:])
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
	return t.writePacket(b) == nil
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
			// A dial refused before the relay served this job (the grant
			// of another member may come a moment later) leaves the
			// swarm backing off from every address of p: a few tries,
			// the backoff cleared between them, within about 5 s.
			connect := func() error {
				var err error
				for try := range 5 {
					if try > 0 {
						if sw, ok := s.h.Network().(*swarm.Swarm); ok {
							sw.Backoff().Clear(p)
						}
						select {
						case <-ctx.Done():
							return ctx.Err()
						case <-time.After(time.Duration(try) * 500 * time.Millisecond):
						}
					}
					if err = s.h.Connect(network.WithAllowLimitedConn(ctx, "job network"), peer.AddrInfo{ID: p}); err == nil {
						return nil
					}
				}
				return err
			}
			path := Path(s.h, p)
			if path == "" && find != nil {
				find(ctx, p)
				path = Path(s.h, p)
			}
			if path == "" {
				if err := connect(); err != nil {
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
				if err := connect(); err != nil {
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
