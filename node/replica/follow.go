package replica

import (
	"fmt"
	"time"

	"github.com/aixblock/aixblock/jobs"
	"github.com/aixblock/aixblock/node/api"
)

// follow reads g's runs until it is decided.
func (c *Checker) follow(g *Group) {
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		t := time.NewTicker(c.cfg.Poll)
		defer t.Stop()
		for {
			if c.step(g.ID) {
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
	if err := c.save(g); err != nil {
		c.log.Warn("checked job not saved", "job_id", id, "err", err)
	}
	return g.State.Terminal() && judged
}

// refresh reads each run not yet ended.
func (c *Checker) refresh(g *Group) {
	for i := range g.Replicas {
		r := &g.Replicas[i]
		if r.done() && (r.Key != "" || r.State != jobs.Completed) {
			continue
		}
		j, err := c.cfg.Lease.Get(c.ctx, r.JobID)
		if err != nil {
			c.log.Debug("run not read", "job_id", r.JobID, "err", err)
			continue
		}
		r.State, r.Provider, r.ResultCID, r.Reason = j.State, j.Provider, j.ResultCID, j.Reason
		if r.State == jobs.Completed {
			r.Key = c.key(g, j)
		}
	}
}

// key is what a completed run's result is compared by.
func (c *Checker) key(g *Group, j *api.Job) string {
	outs := g.Spec.Verify.Outputs
	if len(outs) == 0 || c.cfg.Digest == nil {
		return j.ResultCID
	}
	d, err := c.cfg.Digest(c.ctx, j.ResultCID, outs)
	if err != nil {
		// Read again at the next step: an unreadable result is no vote.
		c.log.Info("a run's outputs not read", "job_id", j.ID, "err", err)
		return ""
	}
	return d
}

// stepReplicas adds the next replica once the last has its provider,
// then decides once all have ended.
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

// run starts another run of g on a provider none of its runs used.
func (c *Checker) run(g *Group, role string) {
	var exclude []string
	for _, r := range g.Replicas {
		if r.Provider != "" {
			exclude = append(exclude, r.Provider)
		}
	}
	spec := g.Spec
	spec.Verify = nil // a run is an ordinary job; the group checks it
	j, err := c.cfg.Lease.Submit(c.ctx, &spec, exclude, g.Spec.Verify.HoldbackBps())
	if err != nil {
		c.end(g, jobs.Failed, fmt.Sprintf("%s not started: %v", role, err))
		return
	}
	c.log.Info("checked job: another run", "job_id", g.ID, "role", role, "run", j.ID, "exclude", exclude)
	g.Replicas = append(g.Replicas, Replica{JobID: j.ID, Role: role, State: j.State, Outcome: Pending})
}

func (c *Checker) end(g *Group, s jobs.State, reason string) {
	g.State, g.Reason, g.EndedAt = s, reason, time.Now().UTC()
	c.log.Info("checked job decided", "job_id", g.ID, "state", s, "reason", reason)
}
