package lease

import (
	"context"
	crand "crypto/rand"
	"encoding/hex"
	"fmt"
	"strings"
	"time"

	"github.com/aixblock/aixblock/chain"
	"github.com/aixblock/aixblock/jobs"
	"github.com/aixblock/aixblock/market"
	"github.com/aixblock/aixblock/market/receipt"
	"github.com/aixblock/aixblock/node/api"
	"github.com/aixblock/aixblock/p2p"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/peerstore"
)

// wire is one protocol between a requester's and a provider's daemon:
// its ID (under the network's prefix), what travels, and the limits both
// sides hold it to. Every request and answer is one length-prefixed frame
// (p2p.Request); an error answer is its reason, within MaxResponse.
type wire struct {
	id     string
	limits p2p.StreamLimits
}

// The job protocol, every message of it. Sizes: a spec is at most
// jobs.MaxSpecBytes (64 KiB) as YAML and its JSON within 128 KiB; a job
// record within 1 MiB; a log chunk maxLogChunk before JSON's base64.
var (
	// startRequest → the provider's jobs.Job.
	wireStart = wire{"jobs/start/1", p2p.StreamLimits{MaxRequest: 128 << 10, MaxResponse: 1 << 20, Timeout: 30 * time.Second}}
	// jobIDRequest → api.Job: the provider's jobs.Job and, for a rank, its
	// job network (annotateNet); with WaitMs, answered when the job's
	// state is no longer Seen or after WaitMs (at most maxStatusWait).
	wireStatus = wire{"jobs/status/1", p2p.StreamLimits{MaxRequest: 1 << 10, MaxResponse: 1 << 20, Timeout: maxStatusWait + 10*time.Second}}
	// jobIDRequest with Offset → logChunk.
	wireLogs = wire{"jobs/logs/1", p2p.StreamLimits{MaxRequest: 1 << 10, MaxResponse: maxLogChunk * 2}}
	// a chain.Voucher as JSON → "ok", or why it was refused.
	wireVoucher = wire{"jobs/voucher/1", p2p.StreamLimits{MaxRequest: chain.MaxVoucherBytes, MaxResponse: 4 << 10}}
	// jobIDRequest with Reason → jobs.Job.
	wireCancel = wire{"jobs/cancel/1", p2p.StreamLimits{MaxRequest: 1 << 10, MaxResponse: 1 << 20}}
	// jobIDRequest with a deal's ID → "ok": the requester will not start
	// the deal (it could not fund it); its GPUs are free at once, and it
	// does not count against the requester as a lapse.
	wireRelease = wire{"jobs/release/1", p2p.StreamLimits{MaxRequest: 1 << 10, MaxResponse: 4 << 10}}
	// A distributed job's gang start: prepareRequest → prepareReply, then
	// goRequest → "ok" once every rank is prepared.
	wirePrepare = wire{"jobs/prepare/1", p2p.StreamLimits{MaxRequest: 128 << 10, MaxResponse: 1 << 20, Timeout: time.Minute}}
	wireGo      = wire{"jobs/go/1", p2p.StreamLimits{MaxRequest: 64 << 10, MaxResponse: 4 << 10, Timeout: gangStartWindow}}
	// regroupRequest → "ok": an elastic rank restarts as its gang's new
	// generation (provider_regroup.go).
	wireRegroup = wire{"jobs/regroup/1", p2p.StreamLimits{MaxRequest: 1 << 20, MaxResponse: 4 << 10, Timeout: time.Minute}}
	// receiptRequest → the provider's signed receipt (market/receipt), or
	// with the receipt both sides signed → "ok" (receipts.go).
	wireReceipt = wire{"jobs/receipt/1", p2p.StreamLimits{MaxRequest: 2 * receipt.MaxReceiptBytes, MaxResponse: receipt.MaxReceiptBytes}}
	// reachRequest → PairReach by peer ID: how a bidder on a distributed
	// job's offer reaches the other bidders (place.go).
	wireReach = wire{"jobs/reach/1", p2p.StreamLimits{MaxRequest: 8 << 10, MaxResponse: 16 << 10, Timeout: reachTimeout + 2*time.Second}}
)

// maxLogChunk is the most log bytes one jobs/logs answer carries;
// maxLogRead the most one read of a log without follow takes from one
// provider (the jobs package rotates a job's output well below it).
const (
	maxStatusWait = 20 * time.Second
	maxLogChunk   = 256 << 10
	maxLogRead    = 1 << 30
)

// protocols registers the provider's side of every wire protocol.
func (pv *Provider) register() {
	for _, p := range []struct {
		w wire
		h p2p.Handler
	}{
		{wireStart, pv.handleJobStart},
		{wireStatus, pv.handleJobStatus},
		{wireLogs, pv.handleJobLogs},
		{wireVoucher, pv.handleJobVoucher},
		{wireCancel, pv.handleJobCancel},
		{wireRelease, pv.handleDealRelease},
		{wirePrepare, pv.handleJobPrepare},
		{wireGo, pv.handleJobGo},
		{wireRegroup, pv.handleJobRegroup},
		{wireReceipt, pv.handleJobReceipt},
		{wireReach, pv.handleReach},
	} {
		p2p.Handle(pv.p2p.Host, pv.p2p.ProtocolID(p.w.id), p.w.limits, pv.log, p.h)
	}
	// As a job relay, this node serves the job networks whose gangs it
	// can check (relay.go).
	pv.p2p.SetRelayVerifier(pv.verifyRelay)
}

// request sends one message of w to prov and returns its answer.
func (b *base) request(ctx context.Context, prov peer.ID, w wire, req []byte) ([]byte, error) {
	b.reach(ctx, prov)
	return p2p.Request(ctx, b.p2p.Host, prov, b.p2p.ProtocolID(w.id), req, w.limits)
}

// reach makes sure the host can talk to prov before a request: with no
// connection, it dials the addresses it knows (kept from an earlier
// connection), and when that fails asks the DHT where prov is now (a
// provider that restarted on another port). The handshake checks the
// peer ID whatever the address.
func (b *base) reach(ctx context.Context, prov peer.ID) {
	h := b.p2p.Host
	if h.Network().Connectedness(prov) == network.Connected {
		return
	}
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if len(h.Peerstore().Addrs(prov)) > 0 && h.Connect(cctx, peer.AddrInfo{ID: prov}) == nil {
		return
	}
	if b.p2p.DHT == nil {
		return
	}
	if ai, err := b.p2p.DHT.FindPeer(cctx, prov); err == nil {
		h.Peerstore().AddAddrs(prov, ai.Addrs, peerstore.TempAddrTTL)
	}
}

// connAddrs are the remote addresses of this host's connections to p.
func (b *base) connAddrs(p string) []string {
	id, err := peer.Decode(p)
	if b.p2p == nil || err != nil {
		return nil
	}
	var out []string
	for _, c := range b.p2p.Host.Network().ConnsToPeer(id) {
		out = append(out, c.RemoteMultiaddr().String())
	}
	return out
}

// publicIP is the public IP of this host's connections to p; "" when
// none is public (market.PublicIP).
func (b *base) publicIP(p string) string {
	if b.p2p == nil {
		return ""
	}
	return market.PeerIP(b.p2p.Host, p)
}

type startRequest struct {
	DealID string    `json:"deal_id"`
	Spec   jobs.Spec `json:"spec"`
	// JobID is the requester's ID for the job, which the provider keeps
	// (16 hex digits); empty lets the provider choose.
	JobID string `json:"job_id,omitempty"`
}

type jobIDRequest struct {
	ID     string `json:"id"`
	Offset int64  `json:"offset,omitempty"`
	// Reason, on a cancel, fails the job with it instead (another rank of
	// a distributed job failed).
	Reason string `json:"reason,omitempty"`
	// WaitMs, on a status, holds the answer until the job's state is no
	// longer Seen, for at most WaitMs (capped at maxStatusWait): the
	// requester learns a start and an end when they happen, and bills
	// and pays for them then, with one request per wait.
	WaitMs int64      `json:"wait_ms,omitempty"`
	Seen   jobs.State `json:"seen,omitempty"`
}

type logChunk struct {
	Data  []byte `json:"data"`
	Done  bool   `json:"done"` // the job ended and this is the last chunk
	Bytes int64  `json:"next_offset"`
}

func newJobID() string {
	var b [8]byte
	crand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// providerJobID is the provider's ID for a job this node named ours, as
// the requester keeps it (empty: the same): it is sent back in requests
// and must be a job ID, never a path.
func providerJobID(ours, got string) (string, error) {
	if got == ours {
		return "", nil
	}
	if err := checkJobID(got); err != nil {
		return "", fmt.Errorf("the provider's ID for job %s: %w", ours, err)
	}
	return got, nil
}

// checkJobID accepts what becomes a file name: a job ID is 16 hex digits.
func checkJobID(id string) error {
	if len(id) != 16 || strings.Trim(id, "0123456789abcdef") != "" {
		return fmt.Errorf("job ID %q: want 16 lowercase hex digits", id)
	}
	return nil
}

func short(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
}

type prepareRequest struct {
	startRequest
	NodeRank int `json:"node_rank"`
	// Group is rank 0's job ID and Deals every rank's deal, by rank: the
	// providers of those deals, and only they, make up the job's network.
	// Absent for ranks on their hosts' networks.
	Group string        `json:"group,omitempty"`
	Deals []market.Deal `json:"deals,omitempty"`
	// Generation is the gang's generation the rank joins: 0 at the first
	// start, the restart's for a replacement (an elastic job).
	Generation int `json:"generation,omitempty"`
	// Checkpoint, for an elastic job's replacement rank, is its gang's
	// latest checkpoint, fetched into /checkpoints in place of the spec's
	// checkpoint.from.
	Checkpoint string `json:"checkpoint,omitempty"`
}

type prepareReply struct {
	Job api.Job `json:"job"`
	// Host and Port are where a rank on its host's network listens.
	Host string `json:"host,omitempty"`
	Port int    `json:"port,omitempty"`
	// Paths is how this provider reaches each other rank's (by rank):
	// direct or relayed; on the job's network only.
	Paths map[int]string `json:"paths,omitempty"`
}

type goRequest struct {
	ID  string   `json:"id"`
	Env []string `json:"env"`
	// Checkpoint, for a replacement joining an elastic gang, is the
	// gang's newest: saved while the replacement prepared.
	Checkpoint string `json:"checkpoint,omitempty"`
}
