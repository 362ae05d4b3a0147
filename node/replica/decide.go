package replica

import (
	"fmt"
	"sort"
	"strings"

	"github.com/aixblock/aixblock/jobs"
)

// Outcomes of a replica.
const (
	Pending  = "pending"  // still running
	Agreed   = "agreed"   // its result is the job's
	Outvoted = "outvoted" // it returned another result than the majority's
	Failed   = "failed"   // it ended without a result
	Unchosen = "unchecked"
)

// Replica is one run of a checked job.
type Replica struct {
	JobID    string `json:"job_id"`
	Provider string `json:"provider,omitempty"`
	// Role is "replica", "tie-breaker" (run after a split) or "original"
	// and "check" (a spot check).
	Role      string     `json:"role"`
	State     jobs.State `json:"state"`
	ResultCID string     `json:"result_cid,omitempty"`
	// Key is what results are compared by: the result CID, or a digest
	// of the outputs the spec names.
	Key     string `json:"key,omitempty"`
	Outcome string `json:"outcome"`
	Reason  string `json:"reason,omitempty"`
	// Verdict is what the lease was told of the run once the job was
	// decided (Lease.Settle); empty until it took it.
	Verdict string `json:"verdict,omitempty"`
	// Wallet and IP are its provider's payee wallet and public IP (empty
	// when unknown): no other run goes to a provider sharing either.
	Wallet string `json:"wallet,omitempty"`
	IP     string `json:"ip,omitempty"`
	// Digest is of the outputs the spec names, once read; Unread counts
	// the reads that failed (after maxReads, the run is no vote).
	Digest string `json:"digest,omitempty"`
	Unread int    `json:"unread,omitempty"`
}

// maxReads is how often a result is read before it counts as none.
const maxReads = 3

// unread: r returned a result not read yet, which may still be.
func (r Replica) unread() bool {
	return r.State == jobs.Completed && r.ResultCID != "" && r.Key == "" && r.Unread < maxReads
}

func (r Replica) done() bool { return r.State.Terminal() }

func (r Replica) completed() bool { return r.State == jobs.Completed && r.Key != "" }

// verdict is what the replicas' results say now.
type verdict struct {
	// more: another run is needed (a split, or too few results).
	more bool
	// decided: the key a majority returned; empty while undecided.
	key string
	// why, when it failed: no majority within the runs allowed.
	why string
}

// decide reads the replicas: once every run has ended, the key returned
// by more than half of the wanted runs (want) wins; a split or missing
// results ask for another run, up to maxRuns in all.
func decide(reps []Replica, want, maxRuns int) verdict {
	for _, r := range reps {
		if !r.done() {
			return verdict{}
		}
	}
	count := map[string]int{}
	for _, r := range reps {
		if r.completed() {
			count[r.Key]++
		}
	}
	need := want/2 + 1
	for k, c := range count {
		if c >= need {
			return verdict{key: k}
		}
	}
	if len(reps) < maxRuns {
		return verdict{more: true}
	}
	return verdict{why: split(count, len(reps))}
}

// split says how the results fell when no majority came.
func split(count map[string]int, runs int) string {
	if len(count) == 0 {
		return fmt.Sprintf("no run of %d returned a result", runs)
	}
	var parts []string
	for k, c := range count {
		parts = append(parts, fmt.Sprintf("%d × %s", c, short(k)))
	}
	sort.Strings(parts)
	return fmt.Sprintf("no majority after %d runs: %s", runs, strings.Join(parts, ", "))
}

// settle marks each replica's outcome once key is decided.
func settle(reps []Replica, key string) {
	for i := range reps {
		switch {
		case reps[i].completed() && reps[i].Key == key:
			reps[i].Outcome = Agreed
		case reps[i].completed():
			reps[i].Outcome = Outvoted
		default:
			reps[i].Outcome = Failed
		}
	}
}

func short(s string) string {
	if len(s) > 16 {
		return s[:16] + "…"
	}
	return s
}
