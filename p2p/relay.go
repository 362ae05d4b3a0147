package p2p

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
	relayv2 "github.com/libp2p/go-libp2p/p2p/protocol/circuitv2/relay"
	"github.com/libp2p/go-libp2p/p2p/protocol/identify"
	ma "github.com/multiformats/go-multiaddr"
)

// The job relay (Config.JobRelay): a circuit relay for the peers of the
// live job networks it serves, and no one else.
//
//   - Which job networks it serves, the daemon says: AllowRelay(job,
//     peers, budget) when one starts, DisallowRelay(job) when it ends; or
//     a member asks with RequestRelay, and the RelayVerifier the daemon
//     set decides from the proof it sends (the job's deals).
//   - A circuit is admitted only between two peers that share a job
//     network served here, each within its budget. Strangers, and two
//     nodes of the network in no common job, are refused.
//   - A reservation (a slot that moves no data) is admitted for nodes of
//     this network (identified as such) and peers it serves: a provider
//     behind NAT needs its slot before its next job starts, as AutoRelay
//     backs off for an hour after a refusal.
//   - Budgets are per peer. The relay counts the bytes it carries to and
//     from each peer; past the sum of the budgets of its live job
//     networks its circuits are reset and new ones refused. A job
//     network's grant ends after its Duration, or with DisallowRelay:
//     then its peers' circuits are reset (those for another job network
//     here too, which its job network opens again).
//   - Circuits are limited ones (each at most Config.JobRelayDuration and
//     Config.JobRelayBytes a direction): only protocols that opt in to
//     limited connections use them (the job network, hole punching,
//     identify), not the market, bitswap or the DHT.

// RelayBudget is what each peer of one job network may use of a job
// relay.
type RelayBudget struct {
	// Bytes is what the relay carries to and from each of the job's
	// peers, both directions together; zero means Config.JobRelayBytes.
	Bytes int64
	// Duration is how long from AllowRelay the job's peers may use the
	// relay; zero means Config.JobRelayDuration.
	Duration time.Duration
}

// RelayVerifier decides a member's request (RequestRelay) that this job
// relay serve its job network: from is the asking peer, proof what it sent
// (at most MaxRelayProof bytes). It returns the job network's ID, its
// peers and budget, or why not; the error goes back to the peer, so it
// must not leak anything private. The asking peer must be one of peers.
type RelayVerifier func(ctx context.Context, from peer.ID, proof []byte) (jobID string, peers []peer.ID, b RelayBudget, err error)

// RelayGrantName is the protocol a member asks a job relay to serve its
// job network on: /aixblock/<network>/relay-grant/1.
const RelayGrantName = "relay-grant/1"

// MaxRelayProof bounds a RequestRelay's proof.
const MaxRelayProof = 1 << 20

const (
	maxRelayJobID = 128
	maxRelayPeers = 4096
	// A stream of a peer the relay serves no job for carries reservation
	// and refused-connect messages (a few hundred bytes each), no more.
	unservedStreamBytes = 64 << 10
	grantTimeout        = 30 * time.Second
)

var (
	errNotServed   = errors.New("job relay: no live job network here for this peer")
	errRelayBudget = errors.New("job relay: the peer's budget is spent")
)

// relays are the job relays of this process by host: a Node finds its
// own here.
var relays sync.Map // host.Host → *jobRelay

func relayOf(h host.Host) *jobRelay {
	if r, ok := relays.Load(h); ok {
		return r.(*jobRelay)
	}
	return nil
}

// AllowRelay lets the peers of job network jobID use this node's job
// relay, each within b, until DisallowRelay(jobID) or b.Duration ends.
// Calling it again for a live jobID replaces its peers and budget and
// starts its Duration again. On a node that is not a job relay it does
// nothing.
func (n *Node) AllowRelay(jobID string, peers []peer.ID, b RelayBudget) error {
	if r := relayOf(n.Host); r != nil {
		return r.allow(jobID, peers, b)
	}
	return nil
}

// DisallowRelay ends job network jobID's use of this node's job relay:
// circuits of its peers that no other live job network here covers are
// reset.
func (n *Node) DisallowRelay(jobID string) {
	if r := relayOf(n.Host); r != nil {
		r.disallow(jobID)
	}
}

// IsJobRelay reports whether this node runs a job relay.
func (n *Node) IsJobRelay() bool { return relayOf(n.Host) != nil }

// SetRelayVerifier sets what decides members' RequestRelay; until it is
// set (or with nil) every request is refused.
func (n *Node) SetRelayVerifier(v RelayVerifier) {
	if r := relayOf(n.Host); r != nil {
		r.mu.Lock()
		r.verify = v
		r.mu.Unlock()
	}
}

// RequestRelay asks the job relay relay to serve a job network this node
// is in, showing proof (what the relay's RelayVerifier wants to see). It
// returns the job network's ID as the relay granted it.
func (n *Node) RequestRelay(ctx context.Context, relay peer.ID, proof []byte) (string, error) {
	if len(proof) > MaxRelayProof {
		return "", fmt.Errorf("relay grant: proof of %d bytes: %w", len(proof), ErrTooLarge)
	}
	resp, err := Request(ctx, n.Host, relay, n.ProtocolID(RelayGrantName), proof,
		StreamLimits{MaxRequest: MaxRelayProof, MaxResponse: maxRelayJobID, Timeout: grantTimeout})
	if err != nil {
		return "", fmt.Errorf("relay grant from %s: %w", relay, err)
	}
	return string(resp), nil
}

// ReservedRelays are the relays this node holds a reservation on (from
// its own relay addresses): the ones a member behind NAT asks to serve
// its job networks.
func (n *Node) ReservedRelays() []peer.ID {
	var out []peer.ID
	for _, a := range n.Host.Addrs() {
		var relay peer.ID
		circuit := false
		ma.ForEach(a, func(c ma.Component) bool {
			switch c.Protocol().Code {
			case ma.P_P2P:
				if id, err := peer.IDFromBytes(c.RawValue()); err == nil {
					relay = id
				}
			case ma.P_CIRCUIT:
				circuit = true
				return false
			}
			return true
		})
		if circuit && relay != "" && !slices.Contains(out, relay) {
			out = append(out, relay)
		}
	}
	return out
}

// jobRelay is the relay service with its ACL and budgets.
type jobRelay struct {
	h       host.Host
	member  protocol.ID
	def     RelayBudget
	log     *slog.Logger
	ctx     context.Context
	cancel  context.CancelFunc
	service *relayv2.Relay

	mu      sync.Mutex
	jobs    map[string]*relayJob
	peers   map[peer.ID]*relayPeer
	streams map[peer.ID]map[*relayStream]struct{}
	verify  RelayVerifier
	asking  map[peer.ID]bool // RequestRelays being decided
}

type relayJob struct {
	peers []peer.ID
	bytes int64
	timer *time.Timer
}

// relayPeer is a peer served here: its live job networks, the bytes they
// allow it, the bytes carried for it since its first.
type relayPeer struct {
	jobs      map[string]bool
	allowance int64
	used      int64
}

// startJobRelay runs the job relay of a node with Config.JobRelay, until
// the host closes. It runs from the start, whatever AutoNAT says: the
// operator has said the node is one to relay through.
func startJobRelay(h host.Host, cfg *Config) error {
	ctx, cancel := context.WithCancel(context.Background())
	r := &jobRelay{
		h:      h,
		member: memberProtocol(cfg.Network),
		def:    RelayBudget{Bytes: cfg.JobRelayBytes, Duration: cfg.JobRelayDuration},
		log:    cfg.Logger.With("component", "job_relay"),
		ctx:    ctx, cancel: cancel,
		jobs:    map[string]*relayJob{},
		peers:   map[peer.ID]*relayPeer{},
		streams: map[peer.ID]map[*relayStream]struct{}{},
		asking:  map[peer.ID]bool{},
	}
	opts := []relayv2.Option{relayv2.WithResources(jobRelayResources(cfg)), relayv2.WithACL(r)}
	if cfg.Metrics != nil {
		opts = append(opts, relayv2.WithMetricsTracer(relayv2.NewMetricsTracer(relayv2.WithRegisterer(cfg.Metrics))))
	}
	// The service sees the host through relayHost, which counts what
	// each circuit carries for each peer.
	svc, err := relayv2.New(&relayHost{Host: h, r: r}, opts...)
	if err != nil {
		cancel()
		return fmt.Errorf("job relay: %w", err)
	}
	r.service = svc
	Handle(h, ProtocolID(cfg.Network, RelayGrantName),
		StreamLimits{MaxRequest: MaxRelayProof, MaxResponse: maxRelayJobID, Timeout: grantTimeout}, r.log, r.handleGrant)
	relays.Store(h, r)
	if sw, ok := h.Network().(interface{ Done() <-chan struct{} }); ok {
		go func() {
			<-sw.Done()
			r.close()
		}()
	}
	return nil
}

func (r *jobRelay) close() {
	relays.Delete(r.h)
	r.cancel()
	r.service.Close()
	r.mu.Lock()
	for _, j := range r.jobs {
		j.timer.Stop()
	}
	r.jobs, r.peers = map[string]*relayJob{}, map[peer.ID]*relayPeer{}
	r.mu.Unlock()
}

// jobRelayResources are a job relay's limits: big buffers (the relay's
// copy is the circuit's ceiling), fewer circuits than libp2p's defaults,
// since each may carry a training run, and each circuit limited to the
// default budget of one peer (the per-peer budgets are kept apart).
func jobRelayResources(cfg *Config) relayv2.Resources {
	rc := relayv2.DefaultResources()
	rc.Limit = &relayv2.RelayLimit{Duration: cfg.JobRelayDuration, Data: cfg.JobRelayBytes}
	rc.MaxCircuits = 32
	rc.BufferSize = 256 << 10
	rc.MaxReservations = 256
	return rc
}

func (r *jobRelay) allow(jobID string, peers []peer.ID, b RelayBudget) error {
	switch {
	case jobID == "" || len(jobID) > maxRelayJobID:
		return fmt.Errorf("job relay: job network id of %d bytes, want 1 to %d", len(jobID), maxRelayJobID)
	case len(peers) < 2 || len(peers) > maxRelayPeers:
		return fmt.Errorf("job relay: job network %s: %d peers, want 2 to %d", jobID, len(peers), maxRelayPeers)
	case b.Bytes < 0 || b.Duration < 0:
		return fmt.Errorf("job relay: job network %s: negative budget %+v", jobID, b)
	}
	if b.Bytes == 0 {
		b.Bytes = r.def.Bytes
	}
	if b.Duration == 0 {
		b.Duration = r.def.Duration
	}
	var uniq []peer.ID
	for _, p := range peers {
		if p != r.h.ID() && !slices.Contains(uniq, p) {
			uniq = append(uniq, p)
		}
	}
	r.mu.Lock()
	if r.ctx.Err() != nil {
		r.mu.Unlock()
		return errors.New("job relay: closed")
	}
	var cut []*relayStream
	if old := r.jobs[jobID]; old != nil {
		// A job network's members are fixed (an elastic gang's restart is
		// a network of its own): another set under a live network's ID is
		// a former member trying to cut the current ones off.
		if !samePeerSet(old.peers, uniq) {
			r.mu.Unlock()
			return fmt.Errorf("job relay: job network %s is served for other peers", jobID)
		}
		cut = r.removeLocked(jobID, old, uniq)
	}
	j := &relayJob{peers: uniq, bytes: b.Bytes}
	j.timer = time.AfterFunc(b.Duration, func() { r.expire(jobID, j) })
	r.jobs[jobID] = j
	for _, p := range uniq {
		ps := r.peers[p]
		if ps == nil {
			ps = &relayPeer{jobs: map[string]bool{}}
			r.peers[p] = ps
		}
		ps.jobs[jobID] = true
		ps.allowance += b.Bytes
	}
	r.mu.Unlock()
	reset(cut)
	r.log.Debug("serving a job network", "job_id", jobID, "peers", len(uniq), "bytes", b.Bytes, "duration", b.Duration)
	return nil
}

func (r *jobRelay) disallow(jobID string) {
	r.mu.Lock()
	var cut []*relayStream
	if j := r.jobs[jobID]; j != nil {
		cut = r.removeLocked(jobID, j, nil)
	}
	r.mu.Unlock()
	reset(cut)
}

// expire ends job's grant when its Duration is over, unless it was
// replaced or removed since.
func (r *jobRelay) expire(jobID string, j *relayJob) {
	r.mu.Lock()
	var cut []*relayStream
	if r.jobs[jobID] == j {
		cut = r.removeLocked(jobID, j, nil)
		r.log.Debug("a job network's relay grant ran out", "job_id", jobID)
	}
	r.mu.Unlock()
	reset(cut)
}

// removeLocked takes job j off its peers and returns the streams to
// reset: every relayed stream of j's peers, except those of the peers in
// keep (j's replacement). A circuit does not say which job network it
// was admitted for, so a peer's circuits for another job here end too;
// the job network opens them again, and AllowConnect admits them again.
func (r *jobRelay) removeLocked(jobID string, j *relayJob, keep []peer.ID) []*relayStream {
	j.timer.Stop()
	delete(r.jobs, jobID)
	var cut []*relayStream
	for _, p := range j.peers {
		if ps := r.peers[p]; ps != nil {
			delete(ps.jobs, jobID)
			ps.allowance -= j.bytes
			if len(ps.jobs) == 0 {
				delete(r.peers, p)
			}
		}
		if !slices.Contains(keep, p) {
			cut = append(cut, r.streamsLocked(p)...)
		}
	}
	return cut
}

func (r *jobRelay) streamsLocked(p peer.ID) []*relayStream {
	var out []*relayStream
	for s := range r.streams[p] {
		out = append(out, s)
	}
	return out
}

func reset(ss []*relayStream) {
	for _, s := range ss {
		s.Reset()
	}
}

// served reports whether p is in a live job network here, within budget.
func (r *jobRelay) served(p peer.ID) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	ps := r.peers[p]
	return ps != nil && ps.used < ps.allowance
}

// AllowReserve is the relay ACL's reservation check: peers served here
// and nodes of this network.
func (r *jobRelay) AllowReserve(p peer.ID, _ ma.Multiaddr) bool {
	r.mu.Lock()
	_, ok := r.peers[p]
	r.mu.Unlock()
	if ok || r.isMember(p) {
		return true
	}
	r.log.Debug("reservation refused: not a node of this network", "peer_id", p)
	return false
}

// isMember reports whether p identified as a node of this network,
// waiting a little for identify on its connections (a reservation may
// come before this side has identified the peer).
func (r *jobRelay) isMember(p peer.ID) bool {
	supports := func() bool {
		ok, err := r.h.Peerstore().SupportsProtocols(p, r.member)
		return err == nil && len(ok) > 0
	}
	if supports() {
		return true
	}
	if ids, ok := r.h.(interface{ IDService() identify.IDService }); ok {
		ctx, cancel := context.WithTimeout(r.ctx, 5*time.Second)
		defer cancel()
		for _, c := range r.h.Network().ConnsToPeer(p) {
			select {
			case <-ids.IDService().IdentifyWait(c):
			case <-ctx.Done():
			}
		}
	}
	return supports()
}

// AllowConnect is the relay ACL's circuit check: src and dest share a
// job network served here, and both are within budget.
func (r *jobRelay) AllowConnect(src peer.ID, _ ma.Multiaddr, dest peer.ID) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	s, d := r.peers[src], r.peers[dest]
	ok := s != nil && d != nil && s.used < s.allowance && d.used < d.allowance
	if ok {
		ok = false
		for id := range s.jobs {
			if d.jobs[id] {
				ok = true
				break
			}
		}
	}
	if !ok {
		r.log.Debug("circuit refused: no shared job network within budget", "src", src, "dest", dest)
	}
	return ok
}

// charge counts n bytes carried for p on stream s, and reports whether p
// may go on. A peer over its allowance has all its circuits reset.
func (r *jobRelay) charge(s *relayStream, n int) bool {
	r.mu.Lock()
	ps := r.peers[s.peer]
	if ps == nil {
		s.unserved += int64(n)
		ok := s.unserved <= unservedStreamBytes
		r.mu.Unlock()
		return ok
	}
	was, allowance := ps.used, ps.allowance
	ps.used += int64(n)
	if ps.used <= allowance {
		r.mu.Unlock()
		return true
	}
	cut := r.streamsLocked(s.peer)
	r.mu.Unlock()
	if was <= allowance {
		r.log.Info("a peer spent its relay budget; its circuits end", "peer_id", s.peer, "bytes", allowance)
	}
	for _, c := range cut {
		if c != s {
			c.Reset()
		}
	}
	return false
}

func (r *jobRelay) track(s *relayStream) {
	r.mu.Lock()
	m := r.streams[s.peer]
	if m == nil {
		m = map[*relayStream]struct{}{}
		r.streams[s.peer] = m
	}
	m[s] = struct{}{}
	r.mu.Unlock()
}

func (r *jobRelay) forget(s *relayStream) {
	r.mu.Lock()
	if m := r.streams[s.peer]; m != nil {
		delete(m, s)
		if len(m) == 0 {
			delete(r.streams, s.peer)
		}
	}
	r.mu.Unlock()
}

func (r *jobRelay) handleGrant(ctx context.Context, from peer.ID, proof []byte) ([]byte, error) {
	r.mu.Lock()
	verify := r.verify
	busy := r.asking[from]
	if verify != nil && !busy {
		r.asking[from] = true
	}
	r.mu.Unlock()
	switch {
	case verify == nil:
		return nil, errors.New("this relay serves only job networks its operator names")
	case busy:
		return nil, errors.New("one request at a time")
	}
	defer func() {
		r.mu.Lock()
		delete(r.asking, from)
		r.mu.Unlock()
	}()
	jobID, peers, b, err := verify(ctx, from, proof)
	if err != nil {
		return nil, err
	}
	if !slices.Contains(peers, from) {
		return nil, errors.New("the asking peer is not one of the job network's")
	}
	if err := r.allow(jobID, peers, b); err != nil {
		return nil, err
	}
	return []byte(jobID), nil
}

// relayHost is the host as the relay service sees it: the streams it
// relays on (the hop streams peers open to it, the stop streams it opens
// to them) are counted against their peers' budgets.
type relayHost struct {
	host.Host
	r *jobRelay
}

func (h *relayHost) SetStreamHandler(pid protocol.ID, handler network.StreamHandler) {
	h.Host.SetStreamHandler(pid, func(s network.Stream) { handler(h.r.wrap(s)) })
}

func (h *relayHost) NewStream(ctx context.Context, p peer.ID, pids ...protocol.ID) (network.Stream, error) {
	// The service opens a stream to a circuit's destination only after
	// AllowConnect; a grant that ended in between ends it here.
	if !h.r.served(p) {
		return nil, errNotServed
	}
	s, err := h.Host.NewStream(ctx, p, pids...)
	if err != nil {
		return nil, err
	}
	return h.r.wrap(s), nil
}

func (r *jobRelay) wrap(s network.Stream) *relayStream {
	rs := &relayStream{Stream: s, r: r, peer: s.Conn().RemotePeer()}
	r.track(rs)
	return rs
}

// relayStream counts what the relay reads from and writes to one peer.
type relayStream struct {
	network.Stream
	r        *jobRelay
	peer     peer.ID
	unserved int64 // bytes while the peer was served no job network; under r.mu
}

func (s *relayStream) Read(b []byte) (int, error) {
	n, err := s.Stream.Read(b)
	if n > 0 && !s.r.charge(s, n) {
		s.Reset()
		return 0, errRelayBudget
	}
	return n, err
}

func (s *relayStream) Write(b []byte) (int, error) {
	if !s.r.charge(s, len(b)) {
		s.Reset()
		return 0, errRelayBudget
	}
	return s.Stream.Write(b)
}

func (s *relayStream) Close() error {
	s.r.forget(s)
	return s.Stream.Close()
}

func (s *relayStream) Reset() error {
	s.r.forget(s)
	return s.Stream.Reset()
}

func (s *relayStream) ResetWithError(code network.StreamErrorCode) error {
	s.r.forget(s)
	return s.Stream.ResetWithError(code)
}

// samePeerSet: a and b hold the same peers (each without repeats).
func samePeerSet(a, b []peer.ID) bool {
	if len(a) != len(b) {
		return false
	}
	for _, p := range a {
		if !slices.Contains(b, p) {
			return false
		}
	}
	return true
}
