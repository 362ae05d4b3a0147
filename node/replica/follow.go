package replica

import (
	"cmp"
	"fmt"
	"reflect"
	"slices"
	"time"

	"github.com/aixblock/aixblock/jobs"
)

// follow reads g's runs until it is decided.
func (c *Checker) follow(g *Group) {
	id := g.ID
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		t := time.NewTicker(c.cfg.Poll)
		defer t.Stop()
		for {
			if c.step(id) {
				return
			}
			select {
			case <-c.ctx.Done():
				return
			case <-t.C:
			}
		}
	}()
}

// step reads the runs, starts what the group needs next and reports
// whether it is decided.
func (c *Checker) step(id string) bool {
	g := c.snapshot(id)
	before := *c.snapshot(id)
	c.refresh(g)
	switch {
	case g.State.Terminal(): // decided: only verdicts are left to give
	case g.Mode == ModeReplicas:
		c.stepReplicas(g)
	case g.Mode == ModeSample:
		c.stepSample(g)
	}
	c.mu.Lock()
	if cur := c.groups[id]; cur.State == jobs.Canceled {
		g.State, g.Reason, g.EndedAt = cur.State, cur.Reason, cur.EndedAt // canceled meanwhile
	}
	c.mu.Unlock()
	judged := !g.State.Terminal() || c.judgeRuns(g)
	c.mu.Lock()
	*c.groups[id] = *g
	for _, r := range g.Replicas {
		c.byJob[r.JobID] = g.ID
	}
	c.mu.Unlock()
	if reflect.DeepEqual(before, *g) {
		return g.State.Terminal() && judged // nothing new to write
	}
	if err := c.save(g); err != nil {
		c.log.Warn("checked job not saved", "job_id", id, "err", err)
	}
	return g.State.Terminal() && judged
}

// refresh reads each run not yet ended, then, once every run of the
// group has ended, reads their results (reveal).
func (c *Checker) refresh(g *Group) {
	for i := range g.Replicas {
		r := &g.Replicas[i]
		if r.done() && (r.ResultCID != "" || r.State != jobs.Completed) {
			continue // read since it ended
		}
		j, err := c.cfg.Lease.Get(c.ctx, r.JobID)
		if err != nil {
			c.log.Debug("run not read", "job_id", r.JobID, "err", err)
			continue
		}
		r.State, r.Provider, r.ResultCID, r.Reason = j.State, j.Provider, j.ResultCID, j.Reason
		r.Wallet, r.IP = cmp.Or(j.ProviderWallet, r.Wallet), cmp.Or(j.ProviderIP, r.IP)
	}
	if ended(g.Replicas) {
		c.reveal(g)
	}
}

func ended(reps []Replica) bool {
	for _, r := range reps {
		if !r.done() {
			return false
		}
	}
	return true
}

// reveal sets the key of each completed run. It runs only once every run
// of the group has ended, each committed to its result CID: reading a
// result fetches it by CID, and a fetch asks the peers this node is
// connected to for that CID, so that a run still going could learn
// another's result and claim it as its own without computing it.
// Results with one CID are one key without a fetch; otherwise the key is
// the digest of the outputs the spec names, or the CID; a comparator
// then merges the keys it finds equivalent.
func (c *Checker) reveal(g *Group) {
	cids := map[string]bool{}
	for _, r := range g.Replicas {
		if r.State == jobs.Completed && r.ResultCID != "" {
			cids[r.ResultCID] = true
		}
	}
	for i := range g.Replicas {
		r := &g.Replicas[i]
		r.Key = ""
		if r.State != jobs.Completed || r.ResultCID == "" {
			continue
		}
		r.Key = r.ResultCID
		if len(cids) > 1 && len(g.Spec.Verify.Outputs) > 0 && c.cfg.Digest != nil {
			r.Key = c.digest(g, r)
		}
	}
	if v := g.Spec.Verify; v.Comparator != nil && c.cfg.Compare != nil {
		c.classes(g)
	}
}

// digest is r's key by the outputs the spec names, read once.
func (c *Checker) digest(g *Group, r *Replica) string {
	if r.Digest != "" {
		return r.Digest
	}
	d, err := c.cfg.Digest(c.ctx, r.ResultCID, g.Spec.Verify.Outputs)
	if err != nil {
		// Read again at the next step; after maxReads it is no vote.
		r.Unread++
		c.log.Info("a run's outputs not read", "job_id", r.JobID, "tries", r.Unread, "err", err)
		return ""
	}
	r.Digest = d
	return d
}

// stepReplicas adds the next replica once the last has its provider (a
// group recorded before runs started at once), then decides once all
// have ended.
func (c *Checker) stepReplicas(g *Group) {
	if len(g.Replicas) < g.Want {
		last := g.Replicas[len(g.Replicas)-1]
		if last.Provider != "" || last.done() {
			c.run(g, "replica")
		}
		return
	}
	c.judge(g)
}

// stepSample waits for the original's result, then draws whether to
// check it.
func (c *Checker) stepSample(g *Group) {
	orig := g.Replicas[0]
	switch {
	case !orig.done():
		return
	case len(g.Replicas) == 1 && orig.State != jobs.Completed:
		c.end(g, orig.State, "the job ended without a result: nothing to check")
		return
	case len(g.Replicas) == 1:
		if c.cfg.Rand() >= g.Spec.Verify.SampleRate() {
			c.end(g, jobs.Completed, "not drawn for a check")
			g.Replicas[0].Outcome = Unchosen
			return
		}
		g.Checked = true
		c.run(g, "check")
		return
	}
	c.judge(g)
}

// judge decides once every run has ended: a tie-breaker for a split,
// the majority's result, or a failure when none comes.
func (c *Checker) judge(g *Group) {
	if slices.ContainsFunc(g.Replicas, Replica.unread) {
		return // a result still to read
	}
	v := decide(g.Replicas, g.Want, g.Want+2)
	switch {
	case v.more:
		c.run(g, "tie-breaker")
	case v.key != "":
		settle(g.Replicas, v.key)
		for _, r := range g.Replicas {
			if r.Key == v.key && g.ResultCID == "" {
				g.ResultCID = r.ResultCID
			}
			if r.Outcome == Outvoted && c.cfg.Outvoted != nil {
				c.cfg.Outvoted(r.Provider, r.JobID)
			}
		}
		c.end(g, jobs.Completed, c.summary(g))
	case v.why != "":
		c.end(g, jobs.Failed, "results disagree: "+v.why)
	}
}

// summary says how the runs came out.
func (c *Checker) summary(g *Group) string {
	agreed, outvoted := 0, 0
	for _, r := range g.Replicas {
		switch r.Outcome {
		case Agreed:
			agreed++
		case Outvoted:
			outvoted++
		}
	}
	if outvoted == 0 {
		return fmt.Sprintf("%d runs agree", agreed)
	}
	return fmt.Sprintf("%d runs agree, %d outvoted", agreed, outvoted)
}

// run starts another run of g on a provider that shares no peer ID,
// wallet or public IP with the providers of its runs.
func (c *Checker) run(g *Group, role string) {
	owners := c.cfg.Owners()
	for _, r := range g.Replicas {
		owners.Hold(r.Provider, r.Wallet, r.IP)
	}
	j, err := c.cfg.Lease.Submit(c.ctx, runSpec(&g.Spec), owners, g.Spec.Verify.HoldbackBps())
	if err != nil {
		c.end(g, jobs.Failed, fmt.Sprintf("%s not started: %v", role, err))
		return
	}
	c.log.Info("checked job: another run", "job_id", g.ID, "role", role, "run", j.ID, "apart_from", owners.Peers())
	g.Replicas = append(g.Replicas, Replica{JobID: j.ID, Role: role, State: j.State, Outcome: Pending})
}

func (c *Checker) end(g *Group, s jobs.State, reason string) {
	g.State, g.Reason, g.EndedAt = s, reason, time.Now().UTC()
	c.log.Info("checked job decided", "job_id", g.ID, "state", s, "reason", reason)
}
