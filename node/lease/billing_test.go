package lease

import (
	"testing"
	"time"

	"github.com/aixblock/aixblock/jobs"
	"github.com/aixblock/aixblock/market"
)

// What a requester pays for an ended job: the run time it saw, rounded up
// to the second; the provider's own duration counts only inside a gap in
// the requester's sight (it was away), never outside what it saw.
func TestBilledRun(t *testing.T) {
	t0 := time.Now()
	at := func(d time.Duration) time.Time { return t0.Add(d) }
	ms := func(n int) time.Duration { return time.Duration(n) * time.Millisecond }
	for _, tc := range []struct {
		name                       string
		runSeen, runUntil, endSeen time.Duration // from t0; runSeen < 0: never seen running
		provider                   time.Duration // the provider's FinishedAt - StartedAt
		want                       time.Duration
	}{
		{"an 80 ms echo, never seen running", -1, -1, ms(300), ms(80), time.Second},
		{"seen running 10.2 s, its end at once", 0, ms(10200), ms(10250), ms(10220), 11 * time.Second},
		{"a provider that claims less than was seen", 0, 5 * time.Second, ms(5100), time.Second, 5 * time.Second},
		{"the requester away 60 s; the job ended inside the gap", 0, 5 * time.Second, 65 * time.Second, 30 * time.Second, 30 * time.Second},
		{"away 60 s; a provider that claims past the end seen", 0, 5 * time.Second, 65 * time.Second, 100 * time.Second, 65 * time.Second},
		{"a provider that says it ran a year", 0, time.Second, 2 * time.Second, 365 * 24 * time.Hour, 2 * time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			started := at(-time.Hour) // the provider's clock: anything
			finished := started.Add(tc.provider)
			rj := &Record{Deal: market.Deal{DealTerms: market.DealTerms{Price: "3600", MaxDurationS: 3600}}, Answered: t0}
			if tc.runSeen >= 0 {
				rj.see(reply(jobs.Job{State: jobs.Running, StartedAt: &started}), at(tc.runSeen))
				rj.see(reply(jobs.Job{State: jobs.Running, StartedAt: &started}), at(tc.runUntil))
			}
			rj.see(reply(jobs.Job{State: jobs.Completed, StartedAt: &started, FinishedAt: &finished}), at(tc.endSeen))
			rj.see(reply(jobs.Job{State: jobs.Completed, StartedAt: &started, FinishedAt: &finished}), at(tc.endSeen+time.Hour))
			if got := billedRun(rj); got != tc.want {
				t.Fatalf("billed %s, want %s", got, tc.want)
			}
			if got, want := jobPayable(rj, time.Hour), dealCost(rj.Deal, tc.want); got.Cmp(want) != 0 {
				t.Fatalf("an ended job pays %s, want its exact cost %s, whatever runs ahead", got, want)
			}
		})
	}
}

// An answer that crossed a later one (sent before the end, read after)
// does not bring an ended job back to running.
func TestSeeNeverRunsAgain(t *testing.T) {
	t0 := time.Now()
	rj := &Record{}
	started := t0
	rj.see(reply(jobs.Job{State: jobs.Running, StartedAt: &started}), t0)
	rj.see(reply(jobs.Job{State: jobs.Completed, StartedAt: &started}), t0.Add(time.Second))
	rj.see(reply(jobs.Job{State: jobs.Running, StartedAt: &started}), t0.Add(2*time.Second))
	if rj.Last.State != jobs.Completed || !rj.RunUntil.Equal(t0) {
		t.Fatalf("after a stale answer: %s, last seen running %s", rj.Last.State, rj.RunUntil.Sub(t0))
	}
}

// Time a provider paused a job for want of pay is billed to no one: the
// provider's word on it only lowers its own pay.
func TestPausedTimeNotBilled(t *testing.T) {
	t0 := time.Now()
	started := t0.Add(-time.Hour)
	finished := started.Add(10 * time.Second)
	rj := &Record{Deal: market.Deal{DealTerms: market.DealTerms{Price: "3600", MaxDurationS: 3600}}, Answered: t0}
	rj.see(reply(jobs.Job{State: jobs.Running, StartedAt: &started}), t0)
	rj.see(reply(jobs.Job{State: jobs.Running, StartedAt: &started, PausedMs: 4000}), t0.Add(9*time.Second))
	if got := observedRun(rj, 0); got != 5*time.Second {
		t.Fatalf("running, 9 s seen, 4 s of it paused: %s", got)
	}
	rj.see(reply(jobs.Job{State: jobs.Completed, StartedAt: &started, FinishedAt: &finished, PausedMs: 4000}), t0.Add(10*time.Second))
	if got := billedRun(rj); got != 6*time.Second {
		t.Fatalf("10 s run, 4 s of it paused: billed %s, want 6s", got)
	}
}

// A hostile provider answered a negative pause, which added time: the
// next voucher was for the deal's whole maximum. A pause only lowers pay.
func TestHostileNegativePause(t *testing.T) {
	t0 := time.Now()
	started := t0
	rj := &Record{Deal: market.Deal{DealTerms: market.DealTerms{Price: "3600", MaxDurationS: 3600}}, Answered: t0}
	rj.see(reply(jobs.Job{State: jobs.Running, StartedAt: &started}), t0)
	rj.see(reply(jobs.Job{State: jobs.Running, StartedAt: &started, PausedMs: -3_600_000}), t0.Add(5*time.Second))
	if got := observedRun(rj, 0); got != 5*time.Second {
		t.Fatalf("5 s seen running, a pause of -1 h claimed: %s", got)
	}
}

// A provider counts an ended job's run less its pauses, as its requester
// bills it: else the channel's later jobs looked short by the pause.
func TestRanCostLessPause(t *testing.T) {
	deal := market.Deal{DealTerms: market.DealTerms{Price: "3600", MaxDurationS: 3600}}
	s := time.Now()
	f := s.Add(10 * time.Second)
	if got, want := ranCost(deal, &s, &f, 4*time.Second), dealCost(deal, 6*time.Second); got.Cmp(want) != 0 {
		t.Fatalf("10 s run, 4 s paused: owes %s, want %s", got, want)
	}
}
