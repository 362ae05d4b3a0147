package replica

import (
	"errors"

	"github.com/aixblock/aixblock/jobs"
)

// Verdicts on a run, as Lease.Settle takes them: the names of the
// outcomes a deal's receipt records (market/receipt), which this package
// does not import.
const (
	VerdictNone            = "none"             // not checked, or no majority
	VerdictAgreed          = "agreed"           // its result is the majority's
	VerdictOutvoted        = "outvoted"         // a majority returned another
	VerdictFailed          = "failed"           // it ended without a result
	VerdictSampledOK       = "sampled-ok"       // a spot check agreed with it
	VerdictSampledMismatch = "sampled-mismatch" // a spot check outvoted it
)

// Verdicts lists every verdict, for a test against the receipts' own.
func Verdicts() []string {
	return []string{VerdictNone, VerdictAgreed, VerdictOutvoted, VerdictFailed, VerdictSampledOK, VerdictSampledMismatch}
}

// verdictOn is what a decided group says of one of its runs. Only a
// result another was preferred to loses its held-back pay: a split with
// no majority, a failed run and a job not drawn for a check are judged
// without blame.
func verdictOn(g *Group, r Replica) string {
	switch {
	case g.State != jobs.Completed && r.State == jobs.Completed:
		return VerdictNone // no majority, or canceled
	case r.Outcome == Agreed && g.Mode == ModeSample && r.Role == "original":
		return VerdictSampledOK
	case r.Outcome == Agreed:
		return VerdictAgreed
	case r.Outcome == Outvoted && g.Mode == ModeSample && r.Role == "original":
		return VerdictSampledMismatch
	case r.Outcome == Outvoted:
		return VerdictOutvoted
	case r.State == jobs.Completed:
		return VerdictNone // not drawn for a check
	}
	return VerdictFailed
}

// judgeRuns tells the lease the verdict on each ended run of a decided
// group that it has not taken yet; it reports whether every run has
// one (a canceled run is judged once it ends).
func (c *Checker) judgeRuns(g *Group) bool {
	all := true
	for i := range g.Replicas {
		r := &g.Replicas[i]
		if r.Verdict != "" {
			continue
		}
		if !r.done() {
			all = false
			continue
		}
		v := verdictOn(g, *r)
		err := c.cfg.Lease.Settle(c.ctx, r.JobID, v)
		if err != nil && !errors.Is(err, jobs.ErrNotFound) {
			c.log.Info("verdict not taken yet", "job_id", r.JobID, "verdict", v, "err", err)
			all = false
			continue
		}
		r.Verdict = v
	}
	return all
}

// unjudged says whether a run of g still waits for its verdict.
func (g *Group) unjudged() bool {
	for _, r := range g.Replicas {
		if r.Verdict == "" {
			return true
		}
	}
	return false
}
