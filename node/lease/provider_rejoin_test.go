package lease

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aixblock/aixblock/jobs"
	"github.com/aixblock/aixblock/market"
	"github.com/aixblock/aixblock/p2p"
	"github.com/aixblock/aixblock/p2p/overlay"
	"github.com/aixblock/aixblock/p2p/p2ptest"
	"github.com/libp2p/go-libp2p/core/peer"
)

// A provider that starts again rejoins each rank that outlived its
// restart from the record it kept (the rank's network and place); a rank
// whose record is lost fails; a record of a job it does not provide
// rejoins nothing.
func TestProviderRejoinsRanks(t *testing.T) {
	hs := p2ptest.MockHosts(t, 2)
	members := []peer.ID{hs[0].ID(), hs[1].ID()}
	const rank, unrecorded, notProvided = "00000000000000d1", "00000000000000d2", "00000000000000d3"
	dir := t.TempDir()
	before := testProvider(t, Config{Dir: dir})
	for _, id := range []string{rank, unrecorded} {
		if err := before.saveProvided(id, market.Deal{DealTerms: market.DealTerms{ID: "deal-" + id}}); err != nil {
			t.Fatal(err)
		}
	}
	before.saveNet(rank, members, netRecord{Net: "net-1", Rank: 1, Group: rank})
	before.saveNet(notProvided, members, netRecord{Net: "net-2", Rank: 1, Group: notProvided})

	runner := newFakeRunner()
	for _, id := range []string{rank, unrecorded, notProvided} {
		runner.jobs[id] = &jobs.Job{ID: id, State: jobs.Running, NetHolder: "holder-" + id}
	}
	pv := testProvider(t, Config{Dir: dir, P2P: &p2p.Node{Host: hs[1]}})
	pv.jobs = runner
	pv.jobNet = overlay.NewJobNet(hs[1], "test", nil)
	t.Cleanup(func() { pv.jobNet.Close() })
	pv.rejoinRanks()
	p2ptest.WaitFor(t, 10*time.Second, func() bool {
		j, _ := runner.Get(unrecorded)
		pv.mu.Lock()
		_, on := pv.netOf[rank]
		pv.mu.Unlock()
		return on && j.State == jobs.Failed
	}, "the ranks were not rejoined or failed")
	runner.mu.Lock()
	rejoined := slices.Clone(runner.rejoined)
	runner.mu.Unlock()
	if !slices.Equal(rejoined, []string{rank}) {
		t.Fatalf("rejoined %q, want only %s", rejoined, rank)
	}
	if nr := pv.netOf[rank]; nr != (netRank{"net-1", 1}) {
		t.Fatalf("rank's network %+v", nr)
	}
	if j, _ := runner.Get(unrecorded); !strings.Contains(j.Reason, "job network record") {
		t.Fatalf("a rank with no record: %s", j.Reason)
	}
	if j, _ := runner.Get(notProvided); j.State != jobs.Running {
		t.Fatalf("a job not provided here: %s (%s)", j.State, j.Reason)
	}
}
