package lease

import (
	"context"
	"slices"
	"sync"
	"time"

	"github.com/aixblock/aixblock/node/api"
	"github.com/aixblock/aixblock/p2p/content"
	"github.com/ipfs/go-cid"
)

// checkpointFetchLimit bounds the fetch of one checkpoint: a provider
// that names a root nobody serves holds no goroutine for longer.
const checkpointFetchLimit = 15 * time.Minute

// noteCheckpoint pins the checkpoint a provider reports for one of this
// node's jobs, when it is new; one pin a job at a time.
func (rq *Requester) noteCheckpoint(rj *Record, c string) {
	if c == "" || rq.pins == nil {
		return
	}
	rq.mu.Lock()
	if !rq.newCheckpointLocked(rj, c) || rq.pinning[rj.ID] {
		rq.mu.Unlock()
		return
	}
	rq.pinning[rj.ID] = true
	rq.mu.Unlock()
	rq.spawn(func(ctx context.Context) {
		defer rq.pinned(rj)
		rq.pinCheckpoint(ctx, rj, c)
	})
}

// newCheckpointLocked: c is a checkpoint rj has not had pinned yet. What
// the rank was started with comes back from a rank that wrote nothing:
// not a newer checkpoint (a regrowth resumed from it would roll the job
// back); nor is what any generation of its gang restarted from.
func (rq *Requester) newCheckpointLocked(rj *Record, c string) bool {
	from := ""
	if rj.Spec.Checkpoint != nil {
		from = rj.Spec.Checkpoint.From
	}
	if c == "" || c == rj.Checkpoint || c == rj.Restored || c == from {
		return false
	}
	if len(rj.Group) > 0 {
		if head := rq.records[rj.Group[0]]; head != nil && head.Elastic != nil && slices.Contains(head.Elastic.Started, c) {
			return false
		}
	}
	return true
}

// pinned ends rj's pin under way.
func (rq *Requester) pinned(rj *Record) {
	rq.mu.Lock()
	delete(rq.pinning, rj.ID)
	rq.mu.Unlock()
}

// catchUpLimit bounds how long a restart waits to pin its ranks' newest
// checkpoints.
const catchUpLimit = 30 * time.Second

// catchUp pins the ranks' newest checkpoints now, before a restart takes
// the newest pinned: the follow rounds pin them a round and a fetch
// behind, and a gang that trained only seconds since its last restart
// would lose all of it.
func (rq *Requester) catchUp(ctx context.Context, ranks []*Record) {
	if rq.pins == nil {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, catchUpLimit)
	defer cancel()
	var wg sync.WaitGroup
	for _, rj := range ranks {
		wg.Go(func() {
			if j, err := rq.remoteStatus(ctx, rj); err == nil {
				rq.pinNow(ctx, rj, j.CheckpointCID)
			}
		})
	}
	wg.Wait()
}

// pinNow pins checkpoint c of rj when it is new, after the pin under way
// (the follow round's) ends.
func (rq *Requester) pinNow(ctx context.Context, rj *Record, c string) {
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	for {
		rq.mu.Lock()
		if !rq.newCheckpointLocked(rj, c) {
			rq.mu.Unlock()
			return
		}
		if !rq.pinning[rj.ID] {
			rq.pinning[rj.ID] = true
			rq.mu.Unlock()
			break
		}
		rq.mu.Unlock()
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
	defer rq.pinned(rj)
	rq.pinCheckpoint(ctx, rj, c)
}

// pinCheckpoint fetches and pins a rank's new checkpoint, then unpins the
// one it replaces: the job always has one pinned here, whoever ran it.
// The provider's word is a CID only; what it names is fetched and
// checked block by block like any content.
func (rq *Requester) pinCheckpoint(ctx context.Context, rj *Record, c string) {
	root, err := cid.Decode(c)
	if err != nil {
		rq.log.Warn("a provider reported a checkpoint that is no CID", "job_id", rj.ID, "provider", rj.Provider, "err", err)
		return
	}
	fctx, cancel := context.WithTimeout(ctx, checkpointFetchLimit)
	defer cancel()
	if _, err := rq.pins.Fetch(fctx, root, nil); err != nil {
		rq.log.Warn("checkpoint not fetched", "job_id", rj.ID, "cid", c, "err", err)
		return
	}
	if err := rq.pins.Pin(ctx, root); err != nil {
		rq.log.Warn("checkpoint not pinned", "job_id", rj.ID, "cid", c, "err", err)
		return
	}
	rq.mu.Lock()
	old := rj.Checkpoint
	rj.Checkpoint, rj.CheckpointAt = c, time.Now().UTC()
	keep := old == "" || rq.checkpointHeldLocked(old) || (rj.Spec.Checkpoint != nil && rj.Spec.Checkpoint.From == old)
	rq.mu.Unlock()
	if err := rq.saveRemote(rj); err != nil {
		rq.log.Warn("remote job record not saved", "job_id", rj.ID, "err", err)
	}
	rq.log.Info("[job] checkpoint pinned", "job_id", rj.ID, "rank", rj.Rank, "cid", c)
	if keep {
		return
	}
	if oc, err := cid.Decode(old); err == nil {
		if err := rq.pins.Unpin(ctx, oc); err != nil {
			rq.log.Warn("older checkpoint not unpinned", "job_id", rj.ID, "cid", old, "err", err)
		}
	}
}

// checkpointHeldLocked: some job's latest checkpoint is c (two ranks, or
// two jobs, may write the same bytes).
func (rq *Requester) checkpointHeldLocked(c string) bool {
	for _, o := range rq.records {
		if o.Checkpoint == c {
			return true
		}
	}
	return false
}

// latestCheckpointLocked is the newest checkpoint pinned here of a job
// (of any of a distributed job's ranks), or "".
func (rq *Requester) latestCheckpointLocked(rj *Record) (string, time.Time) {
	best, at := rj.Checkpoint, rj.CheckpointAt
	for _, id := range rj.gangIDs() {
		if o := rq.records[id]; o != nil && o.Checkpoint != "" && o.CheckpointAt.After(at) {
			best, at = o.Checkpoint, o.CheckpointAt
		}
	}
	return best, at
}

// withCheckpoint shows a job with the checkpoint pinned here, not the
// one its provider claims: what a restart or a resume can count on.
func (rq *Requester) withCheckpoint(rj *Record, j *api.Job) *api.Job {
	if j == nil {
		return nil
	}
	v := *j
	rq.mu.Lock()
	c, at := rq.latestCheckpointLocked(rj)
	rq.mu.Unlock()
	v.CheckpointCID, v.CheckpointAt = c, nil
	if c != "" {
		v.CheckpointAt = &at
	}
	rq.mu.Lock()
	if rj.Elastic != nil && !rj.Former {
		v.Events = append([]api.JobEvent(nil), rj.Elastic.Events...)
	}
	rq.mu.Unlock()
	return &v
}

// pinner is what keeps checkpoints here (content.Store).
type pinner interface {
	Fetch(ctx context.Context, root cid.Cid, progress func(content.FetchStats)) (content.FetchStats, error)
	Pin(ctx context.Context, root cid.Cid) error
	Unpin(ctx context.Context, root cid.Cid) error
}
