package main

import (
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aixblock/aixblock/jobs/jobstest"
	"github.com/aixblock/aixblock/p2p/p2ptest"
)

// checkedJob is what `job status --json` says of a checked job's runs.
type checkedJob struct {
	ID           string `json:"id"`
	State        string `json:"state"`
	Reason       string `json:"reason"`
	ResultCID    string `json:"result_cid"`
	Verification *struct {
		JobID   string `json:"job_id"`
		State   string `json:"state"`
		Reason  string `json:"reason"`
		Checked bool   `json:"checked"`
		Runs    []struct {
			JobID     string `json:"job_id"`
			Role      string `json:"role"`
			Provider  string `json:"provider"`
			ResultCID string `json:"result_cid"`
			Outcome   string `json:"outcome"`
		} `json:"runs"`
	} `json:"verification"`
}

// Results a requester can check, on a dev chain with three CPU
// providers: the cheapest one cheats (a build that only tests make adds
// a file to every result). A job run on 2 replicas meets it first, the
// split goes to a tie-breaker on the third provider, and the cheat is
// outvoted; a job sampled at 100% is run again elsewhere without its
// provider being told, and the cheat is caught the same way.
func TestReplicatedJobs(t *testing.T) {
	jobstest.Docker(t)
	info, file := startDevchain(t)
	net := startChainNet(t, "replicatest", info, file,
		chainNode{init: []string{"--price", "cpu=1"}, hostile: true},
		chainNode{init: []string{"--price", "cpu=2"}},
		chainNode{init: []string{"--price", "cpu=3"}},
		chainNode{})
	req := net.repos[3]
	var cheat idInfo
	runJSON(t, net.repos[0], &cheat, "id")
	waitProviders(t, req, 3, "--gpu", "cpu")

	r := run(t, req, "job", "run", "--replicas", "2", "--holdback", "20%", "--cpu", "1", "--max-price", "5", "--output", "/outputs/hello.txt",
		jobstest.Image, "--", "greet", "checked")
	if r.code != 0 {
		t.Fatalf("job run --replicas 2: exit %d\n%s%s\n%s", r.code, r.stdout, r.stderr, mustRun(t, req, "job", "list", "--json"))
	}
	id := jobIDFrom(t, r.stderr)
	j := checkedStatus(t, req, id)
	outvoted(t, j, cheat.PeerID, 3, "2 runs agree, 1 outvoted")
	heldBack(t, req, j, cheat.PeerID)
	// Another requester that dealt with req (an honest provider of its
	// runs) hears of the cheat from req's receipts.
	var rec struct {
		Summary struct {
			Outvoted int
			Evidence struct{ Dealt int } `json:"evidence"`
		} `json:"summary"`
	}
	p2ptest.WaitFor(t, time.Minute, func() bool {
		runJSON(t, net.repos[1], &rec, "market", "receipts", cheat.PeerID)
		return rec.Summary.Outvoted >= 1 && rec.Summary.Evidence.Dealt >= 1
	}, "another requester's view of the cheat: %+v, want an outvoted receipt from a peer it dealt with", &rec)
	if out := mustRun(t, req, "job", "status", id); !strings.Contains(out, "verification") || !strings.Contains(out, "tie-breaker") {
		t.Fatalf("job status of a replicated job:\n%s", out)
	}
	sampled(t, req, cheat.PeerID)
}

// heldBack: each agreeing run is paid in full once the verdict is in;
// the cheat's run is paid its cost less the 20% held back, and its
// receipt, which the cheat would not sign, says outvoted.
func heldBack(t *testing.T, req string, j checkedJob, cheat string) {
	t.Helper()
	for _, run := range j.Verification.Runs {
		var st struct {
			Cost struct {
				Cost, Paid string
				Ranks      []struct{ Holdback string } `json:"ranks"`
			} `json:"cost"`
		}
		want := "20% paid"
		if run.Provider == cheat {
			want = "20% withheld"
		}
		p2ptest.WaitFor(t, time.Minute, func() bool {
			runJSON(t, req, &st, "job", "status", run.JobID)
			return len(st.Cost.Ranks) == 1 && st.Cost.Ranks[0].Holdback == want
		}, "run %s on %s: holdback %+v, want %q", run.JobID, run.Provider, &st.Cost, want)
		cost, paid := bigOf(t, st.Cost.Cost), bigOf(t, st.Cost.Paid)
		if run.Provider == cheat && paid.Cmp(cost) >= 0 {
			t.Fatalf("the outvoted cheat was vouched %s of a cost of %s: the holdback was paid", paid, cost)
		}
		if run.Provider != cheat && paid.Cmp(cost) < 0 {
			t.Fatalf("an agreeing run on %s was vouched %s of %s: not paid in full", run.Provider, paid, cost)
		}
	}
	var rec struct {
		Summary struct{ Outvoted int } `json:"summary"`
	}
	p2ptest.WaitFor(t, time.Minute, func() bool {
		runJSON(t, req, &rec, "market", "receipts", cheat)
		return rec.Summary.Outvoted >= 1
	}, "the cheat's receipts: %+v, want an outvoted one", &rec)
}

func bigOf(t *testing.T, s string) *big.Int {
	t.Helper()
	v, ok := new(big.Int).SetString(s, 10)
	if !ok {
		t.Fatalf("amount %q", s)
	}
	return v
}

// sampled: verify: {sample: 100%} always draws a check.
func sampled(t *testing.T, req, cheat string) {
	t.Helper()
	spec := filepath.Join(t.TempDir(), "job.yaml")
	os.WriteFile(spec, []byte("image: "+jobstest.Image+"\nargs: [greet, sampled]\nresources: {cpu: 1}\nmax_price: \"5\"\nverify: {sample: 100%}\n"), 0o600)
	id := strings.TrimSpace(mustRun(t, req, "job", "submit", spec))
	var j checkedJob
	p2ptest.WaitFor(t, 3*time.Minute, func() bool {
		j = checkedStatus(t, req, id)
		return j.Verification != nil && (j.Verification.State == "completed" || j.Verification.State == "failed")
	}, "the sampled job %s was never checked: %+v", id, &j)
	if !j.Verification.Checked {
		t.Fatalf("sampled at 100%% and not checked: %+v", j.Verification)
	}
	// The cheat may have been outbid for the original (its reputation
	// fell after the first job): whoever ran it, the check must agree
	// with the majority, and a cheat among the runs is outvoted.
	for _, run := range j.Verification.Runs {
		if run.Provider == cheat && run.Outcome != "outvoted" {
			t.Fatalf("the cheat's run %+v is not outvoted", run)
		}
	}
}

func outvoted(t *testing.T, j checkedJob, cheat string, runs int, reason string) {
	t.Helper()
	v := j.Verification
	if j.State != "completed" || v == nil || len(v.Runs) != runs || v.Reason != reason {
		t.Fatalf("checked job %+v", j)
	}
	seen := map[string]bool{}
	for _, r := range v.Runs {
		if seen[r.Provider] {
			t.Fatalf("two runs on %s: %+v", r.Provider, v.Runs)
		}
		seen[r.Provider] = true
		want := "agreed"
		if r.Provider == cheat {
			want = "outvoted"
		}
		if r.Outcome != want {
			t.Fatalf("run %+v: want %s", r, want)
		}
		if want == "agreed" && r.ResultCID != j.ResultCID {
			t.Fatalf("the job's result %s is not its agreeing runs' (%s)", j.ResultCID, r.ResultCID)
		}
	}
	if !seen[cheat] {
		t.Fatalf("the cheat ran none of the runs: %+v", v.Runs)
	}
}

func checkedStatus(t *testing.T, repo, id string) checkedJob {
	t.Helper()
	var j checkedJob
	runJSON(t, repo, &j, "job", "status", id)
	return j
}

// jobIDFrom reads `job ID` from job run's stderr.
func jobIDFrom(t *testing.T, stderr string) string {
	t.Helper()
	for _, l := range strings.Split(stderr, "\n") {
		if f := strings.Fields(l); len(f) == 2 && f[0] == "job" {
			return f[1]
		}
	}
	t.Fatalf("no job ID in:\n%s", stderr)
	return ""
}
