package lease

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/aixblock/aixblock/internal/atomicfile"
	"github.com/aixblock/aixblock/jobs"
	"github.com/aixblock/aixblock/market"
	"github.com/aixblock/aixblock/node/api"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/peerstore"
	"github.com/multiformats/go-multiaddr"
)

// The state both sides keep, and the records that survive a restart.

// Record is the requester's record of a job running elsewhere.
type Record struct {
	ID string `json:"id"` // the job's ID here, and on the provider unless Remote says otherwise
	// Remote is the provider's ID for the job when it differs from ID (a
	// provider that does not take the requester's).
	Remote   string      `json:"remote_id,omitempty"`
	Provider string      `json:"provider"`
	Deal     market.Deal `json:"deal"`
	Last     *api.Job    `json:"last"` // the provider's record, as last seen
	// Vouched is this job's share of the channel's cumulative voucher.
	Vouched string `json:"vouched"`
	// Settled: the job ended and a voucher for its whole cost reached the
	// provider.
	Settled bool `json:"settled"`
	// LastSeen is when the provider last answered about the job; a running
	// job is paid up to it, never beyond.
	LastSeen time.Time `json:"last_seen"`
	// Unreachable: the provider vanished and the job was failed here.
	Unreachable bool `json:"unreachable,omitempty"`
	// RetriedAs is the job that replaced this one on another provider.
	RetriedAs string `json:"retried_as,omitempty"`
	// Spec is kept for a retry.
	Spec jobs.Spec `json:"spec"`
	// Group names every rank's job of a distributed job, by rank; Rank is
	// this one's.
	Group []string `json:"group,omitempty"`
	Rank  int      `json:"rank,omitempty"`
	// GangStartMs is rank 0's: how long the gang start took.
	GangStartMs int64 `json:"gang_start_ms,omitempty"`
	// GroupResult is rank 0's: the directory of every rank's result.
	GroupResult string `json:"group_result,omitempty"`
	// QueueUntil is when a queued job stops waiting for a provider.
	QueueUntil time.Time `json:"queue_until,omitempty"`
	// Rated: the deal's outcome is in the provider's reputation.
	Rated bool `json:"rated,omitempty"`
	// RunSeen and EndSeen are when this node first saw the job started
	// and ended, by its own clock: it pays for the time between them (or
	// up to LastSeen while it runs), never for the provider's StartedAt
	// and FinishedAt, which a provider could set to anything.
	RunSeen time.Time `json:"run_seen,omitzero"`
	EndSeen time.Time `json:"end_seen,omitzero"`
	// RunUntil is when this node last saw the job running, and Answered
	// when its provider answered the start: the job ended between
	// RunUntil (else Answered) and EndSeen, which bounds what a provider's
	// own account of its run time may claim after a gap in this node's
	// sight (a restart, a sleep).
	RunUntil time.Time `json:"run_until,omitzero"`
	// Prepay is how far this job's vouchers run ahead of its run time
	// (zero: the daemon's payment.prepay); see Manager.ahead.
	Prepay   time.Duration `json:"prepay,omitempty"`
	Answered time.Time     `json:"answered,omitzero"`
	// ProviderAddrs are the addresses of this node's last connection to
	// the provider (its identity checked by the handshake), so that a
	// restarted daemon can reach it again without asking anyone.
	ProviderAddrs []string `json:"provider_addrs,omitempty"`
	// HoldbackBps of the job's pay waits for its result's verification
	// (the deal carries the same, signed); Holdback says where that
	// share stands: "held" until Settle, then "paid" or "withheld".
	HoldbackBps int    `json:"holdback_bps,omitempty"`
	Holdback    string `json:"holdback,omitempty"`
	// Verdict is how its checker judged the job's result (one of
	// market/receipt's outcomes); empty until then.
	Verdict string `json:"verdict,omitempty"`
	// Restored is the checkpoint this rank was last started with: a rank
	// that writes none reports it back (its /checkpoints holds it), and
	// that is no newer checkpoint.
	Restored string `json:"restored,omitempty"`
	// submitted: queued by this run of the daemon, which starts it; only
	// records loaded from disk are resumed (resumeQueued).
	submitted bool
	// Placement is rank 0's: how the gang's providers were chosen.
	Placement *api.Placement `json:"placement,omitempty"`
	// Checkpoint is the newest checkpoint of this job pinned here, and
	// CheckpointAt when it was (this node's clock).
	Checkpoint   string    `json:"checkpoint,omitempty"`
	CheckpointAt time.Time `json:"checkpoint_at,omitzero"`
	// Elastic is the head's (the job's ID, rank 0 of the current
	// generation) of an elastic distributed job: its membership's story
	// (requester_elastic.go).
	Elastic *elasticState `json:"elastic,omitempty"`
	// Former: a rank that left its elastic gang (lost); Group[0] is still
	// its job's ID, Rank its last.
	Former bool `json:"former,omitempty"`
	// ProviderGen is the generation its provider counts the rank in: a
	// report of a rank waiting for a restart from before it counts for
	// nothing.
	ProviderGen int `json:"provider_gen,omitempty"`
}

// inGang: the record is a rank of a distributed job (an elastic one's
// head even when it is the only rank left).
func (rj *Record) inGang() bool { return len(rj.Group) > 1 || rj.Elastic != nil || rj.Former }

// isHead: the record stands for its distributed job (its ID is the
// job's; rank 0 of the current generation).
func (rj *Record) isHead() bool { return rj.inGang() && rj.Rank == 0 && !rj.Former }

// see records the provider's answer about the job at now (this node's
// clock), and when the job was first seen started and ended.
func (rj *Record) see(j *api.Job, now time.Time) {
	if j.PausedMs < 0 {
		j.PausedMs = 0 // a provider's pause only lowers its own pay
	}
	if rj.Last != nil && rj.Last.State.Terminal() && !j.State.Terminal() && !rj.EndSeen.IsZero() {
		// An answer older than the end already seen (two requests
		// crossed): an ended job does not run again.
		return
	}
	rj.Last, rj.LastSeen = j, now
	if j.StartedAt != nil && rj.RunSeen.IsZero() {
		rj.RunSeen = now
	}
	if j.StartedAt != nil && !j.State.Terminal() {
		rj.RunUntil = now
	}
	if j.State.Terminal() && rj.EndSeen.IsZero() {
		rj.EndSeen = now
		if rj.RunSeen.IsZero() && j.StartedAt != nil {
			rj.RunSeen = now
		}
	}
}

// remoteID is the job's ID on its provider.
func (rj *Record) remoteID() string {
	if rj.Remote != "" {
		return rj.Remote
	}
	return rj.ID
}

// queued reports whether the job waits for a provider (no deal yet).
func (rj *Record) queued() bool { return rj.Provider == "" }

func (rq *Requester) remoteDir() string { return filepath.Join(rq.cfg.Dir, "remote") }

// loadRecords loads the requester's records of its market jobs.
func (rq *Requester) loadRecords() error {
	if err := os.MkdirAll(rq.remoteDir(), 0o700); err != nil {
		return err
	}
	entries, err := os.ReadDir(rq.remoteDir())
	if err != nil {
		return fmt.Errorf("remote job records: %w", err)
	}
	byDeal := map[string]*Record{}
	for _, e := range entries {
		if !strings.HasSuffix(e.Name(), ".json") {
			continue
		}
		b, err := os.ReadFile(filepath.Join(rq.remoteDir(), e.Name()))
		if err != nil {
			rq.log.Error("remote job record unreadable; leaving it out", "file", e.Name(), "err", err)
			continue
		}
		var rj Record
		if err := json.Unmarshal(b, &rj); err != nil {
			rq.log.Error("remote job record is corrupt; leaving it out", "file", e.Name(), "err", err)
			continue
		}
		// The file is named after the ID it holds; one that is not is no
		// record of ours.
		if err := checkJobID(rj.ID); err != nil || rj.ID+".json" != e.Name() {
			rq.log.Error("remote job record names another job, or none; leaving it out", "file", e.Name(), "id", rj.ID, "err", err)
			continue
		}
		if other := byDeal[rj.Deal.ID]; rj.Deal.ID != "" && other != nil {
			// Two records of one deal would pay it twice: the stale one
			// of a rank renamed (an elastic restart) when the daemon
			// stopped before it removed the old file.
			keep, drop := other, &rj
			if rj.ProviderGen > other.ProviderGen {
				keep, drop = &rj, other
			}
			rq.log.Warn("two records of one deal: keeping the newer generation's", "deal_id", short(rj.Deal.ID), "kept", keep.ID, "left_out", drop.ID)
			delete(rq.records, drop.ID)
			rq.records[keep.ID], byDeal[rj.Deal.ID] = keep, keep
			continue
		}
		rq.records[rj.ID] = &rj
		byDeal[rj.Deal.ID] = &rj
	}
	return nil
}

// saveRemote writes a requester's record atomically.
func (rq *Requester) saveRemote(rj *Record) error {
	if err := checkJobID(rj.ID); err != nil {
		return fmt.Errorf("save remote job: %w", err)
	}
	addrs := rq.connAddrs(rj.Provider)
	rq.mu.Lock()
	if len(addrs) > 0 {
		rj.ProviderAddrs = addrs
	}
	b, err := json.MarshalIndent(rj, "", "  ")
	rq.mu.Unlock()
	if err == nil {
		err = atomicfile.WriteFile(filepath.Join(rq.remoteDir(), rj.ID+".json"), b, 0o600)
	}
	if err != nil {
		return fmt.Errorf("save remote job %s: %w", rj.ID, err)
	}
	return nil
}

// rememberAddrs gives the host the addresses of each loaded record's
// provider, for the requests that follow a restart.
func (rq *Requester) rememberAddrs() {
	if rq.p2p == nil {
		return
	}
	rq.mu.Lock()
	defer rq.mu.Unlock()
	for _, rj := range rq.records {
		id, err := peer.Decode(rj.Provider)
		if err != nil || rj.Settled {
			continue
		}
		for _, a := range rj.ProviderAddrs {
			if ma, err := multiaddr.NewMultiaddr(a); err == nil {
				rq.p2p.Host.Peerstore().AddAddr(id, ma, peerstore.RecentlyConnectedAddrTTL)
			}
		}
	}
}
