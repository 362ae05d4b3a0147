package lease

import (
	"errors"
	"testing"
	"time"

	"github.com/aixblock/aixblock/jobs"
	"github.com/aixblock/aixblock/market"
	"github.com/aixblock/aixblock/node/api"
)

// A distributed job's cost view has every rank's provider and sums their
// costs; a job the node runs itself has none.
func TestCostRanks(t *testing.T) {
	n := makeRequester(&base{})
	start := time.Unix(1_800_000_000, 0)
	end := start.Add(30 * time.Minute)
	group := []string{"job0", "job1"}
	for r, prov := range []string{"12D3KooWprovA", "12D3KooWprovB"} {
		n.records[group[r]] = &Record{ID: group[r], Provider: prov, Group: group, Rank: r, Vouched: "100",
			Deal: market.Deal{DealTerms: market.DealTerms{Price: "2000000", GPUs: []string{"g0", "g1"}, MaxDurationS: 3600}},
			Last: reply(jobs.Job{ID: group[r], State: jobs.Running, StartedAt: &start}), LastSeen: end}
	}
	c, err := n.Cost(t.Context(), "job0")
	if err != nil {
		t.Fatal(err)
	}
	// Each rank: 2 GPUs × 0.5 h × 2000000 = 2000000; at most 4000000.
	if len(c.Ranks) != 2 || c.Ranks[0].Provider != "12D3KooWprovA" || c.Ranks[1].Provider != "12D3KooWprovB" || c.Ranks[1].Rank != 1 ||
		c.Cost != "4000000" || c.Paid != "200" || c.MaxCost != "8000000" || c.Ranks[0].Cost != "2000000" {
		t.Fatalf("cost view: %+v", c)
	}
	// Queued: no deal, no price yet.
	n.records["queued"] = &Record{ID: "queued", Vouched: "0", Last: reply(jobs.Job{ID: "queued", State: api.JobQueued})}
	if c, err := n.Cost(t.Context(), "queued"); err != nil || c.Cost != "0" || c.MaxCost != "0" || len(c.Ranks) != 1 || c.Ranks[0].Provider != "" {
		t.Fatalf("a queued job's cost view: %+v, %v", c, err)
	}
	if _, err := n.Cost(t.Context(), "nope"); !errors.Is(err, jobs.ErrNotFound) {
		t.Fatalf("a job not through the market: %v", err)
	}
}
