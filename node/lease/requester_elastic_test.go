package lease

import (
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aixblock/aixblock/jobs"
	"github.com/aixblock/aixblock/market"
	"github.com/aixblock/aixblock/node/api"
)

// ranksSeen are members as classify reads them from records.
func ranksSeen(states ...string) []member {
	var ms []member
	for _, st := range states {
		rj := &Record{ID: newJobID(), Provider: "12D3KooWprovider" + st, Last: &api.Job{}}
		switch st {
		case "running":
			rj.Last.State = jobs.Running
		case "unreachable":
			rj.Last.State, rj.Unreachable = jobs.Failed, true
		case "unknown":
			rj.Last.State = api.JobUnknown
		case "failed":
			rj.Last.State, rj.Last.Reason = jobs.Failed, "GPU 0 unhealthy"
		case "held":
			rj.Last.State, rj.Last.Regroup, rj.Last.Generation = jobs.Running, "exited with code 1", 2
			rj.ProviderGen = 2
		case "held before":
			rj.Last.State, rj.Last.Regroup, rj.Last.Generation = jobs.Running, "exited with code 1", 1
			rj.ProviderGen = 2 // a report from before the last restart
		case "done":
			rj.Last.State = jobs.Completed
		case "canceled":
			rj.Last.State = jobs.Canceled
		}
		ms = append(ms, classify(rj))
	}
	return ms
}

// A lost rank restarts the others while min_nodes remain and restarts
// are left; a silent provider is waited for; a stopped rank ends it.
func TestElasticDecide(t *testing.T) {
	d := &jobs.Distributed{Nodes: 3, MinNodes: 2, MaxRestarts: 2}
	for name, tc := range map[string]struct {
		states   []string
		restarts int
		spare    bool
		act      elasticAct
		keep     []int
		grow     bool
		why      string
	}{
		"all running":             {states: []string{"running", "running", "running"}, act: actNone},
		"rank 2 unreachable":      {states: []string{"running", "running", "unreachable"}, act: actRestart, keep: []int{0, 1}, why: "rank 2 lost (provider 12D3KooWprov.. unreachable)"},
		"rank 0 failed":           {states: []string{"failed", "held", "running"}, act: actRestart, keep: []int{1, 2}, why: "rank 0 lost (failed: GPU 0 unhealthy), rank 1 exited with code 1"},
		"held in place":           {states: []string{"held", "running", "running"}, act: actRestart, keep: []int{0, 1, 2}, why: "rank 0 exited with code 1"},
		"held before restart":     {states: []string{"held before", "running", "running"}, act: actNone},
		"silent: wait":            {states: []string{"held", "running", "unknown"}, act: actWait},
		"below min_nodes":         {states: []string{"running", "unreachable", "failed"}, act: actGiveUp, why: "fewer than min_nodes 2"},
		"no restarts left":        {states: []string{"running", "running", "unreachable"}, restarts: 2, act: actGiveUp, why: "max_restarts 2 reached"},
		"canceled ends it":        {states: []string{"canceled", "running"}, act: actEnd},
		"completed: they end":     {states: []string{"done", "running", "unreachable"}, act: actFinish},
		"spare grows it":          {states: []string{"running", "running"}, spare: true, act: actRestart, keep: []int{0, 1}, grow: true},
		"spare with a loss":       {states: []string{"running", "unreachable"}, spare: true, act: actRestart, keep: []int{0}, grow: true, why: "rank 1 lost"},
		"growth needs no restart": {states: []string{"running", "running"}, restarts: 2, spare: true, act: actRestart, keep: []int{0, 1}, grow: true},
	} {
		t.Run(name, func(t *testing.T) {
			p := decide(d, &elasticState{Restarts: tc.restarts}, ranksSeen(tc.states...), tc.spare)
			if p.act != tc.act {
				t.Fatalf("act %d, want %d (%+v)", p.act, tc.act, p)
			}
			if tc.keep != nil && (!slices.Equal(p.keep, tc.keep) || p.grow != tc.grow) {
				t.Fatalf("keep %v grow %v, want %v %v", p.keep, p.grow, tc.keep, tc.grow)
			}
			if !strings.Contains(p.why, tc.why) {
				t.Fatalf("why %q, want it to contain %q", p.why, tc.why)
			}
		})
	}
}

// The new generation's contract: its ranks renumbered, rank 0's overlay
// address the master, every launcher's variables for the new size.
func TestElasticEnv(t *testing.T) {
	spec := &jobs.Spec{Distributed: &jobs.Distributed{Nodes: 3, MinNodes: 2, Framework: "pytorch"}}
	host, port, workers := overlayContract(spec, 2)
	env := rankEnv(spec, 2, 1, host, port, workers)
	for _, want := range []string{"WORLD_SIZE=2", "RANK=1", "NODE_RANK=1", "MASTER_ADDR=10.77.0.1", "MASTER_PORT=29500",
		"PET_NNODES=2", "PET_NODE_RANK=1", "PET_MASTER_ADDR=10.77.0.1",
		`TF_CONFIG={"cluster":{"worker":["10.77.0.1:29500","10.77.0.2:29500"]},"task":{"index":1,"type":"worker"}}`} {
		if !slices.Contains(env, want) {
			t.Errorf("no %s in %v", want, env)
		}
	}
	if err := jobs.ValidateGoEnv(env); err != nil {
		t.Fatal(err)
	}
}

// When rank 0 is lost, the next rank takes the job's ID (its provider's
// ID for it kept as Remote), the lost record a new one, and the files
// follow; the membership story moves with the ID.
func TestElasticRenumberKeepsTheJobID(t *testing.T) {
	rq := testRequester(t, Config{})
	spec := jobs.Spec{Distributed: &jobs.Distributed{Nodes: 3, MinNodes: 2}}
	job, b, c := newJobID(), newJobID(), newJobID()
	group := []string{job, b, c}
	var old []*Record
	for r, id := range group {
		rj := &Record{ID: id, Provider: "prov" + id, Spec: spec, Group: group, Rank: r, Last: &api.Job{}, Vouched: "0"}
		rj.Last.State = jobs.Running
		rq.records[id] = rj
		old = append(old, rj)
		if err := rq.saveRemote(rj); err != nil {
			t.Fatal(err)
		}
	}
	old[0].Elastic, old[0].Unreachable = &elasticState{}, true
	p := elasticPlan{act: actRestart, keep: []int{1, 2}, lost: []int{0}}
	g := &generation{head: job, gen: 1, spec: &spec, ranks: []*Record{old[1], old[2]}}
	rq.renumber(g, old, p)

	head := rq.records[job]
	if head != old[1] || head.Remote != b || head.Rank != 0 || head.Elastic == nil || head.Elastic.Generation != 1 || head.Elastic.Restarts != 1 {
		t.Fatalf("the job's ID is on %+v", head)
	}
	lost := old[0]
	if rq.records[lost.ID] != lost || lost.remoteID() != job || !lost.Former || lost.Elastic != nil || !slices.Equal(head.Elastic.Former, []string{lost.ID}) {
		t.Fatalf("the lost rank 0 is %+v", lost)
	}
	if !slices.Equal(old[2].Group, []string{job, c}) || old[2].Rank != 1 || old[2].ProviderGen != 1 {
		t.Fatalf("rank 2 is now %+v", old[2])
	}
	if _, err := os.Stat(filepath.Join(rq.remoteDir(), b+".json")); !os.IsNotExist(err) {
		t.Fatalf("%s.json still there: %v", b, err)
	}
	again := testRequester(t, Config{Dir: rq.cfg.Dir})
	if got := again.records[job]; got == nil || got.Provider != "prov"+b || got.Elastic == nil {
		t.Fatalf("reloaded, the job is %+v", got)
	}
	if len(again.records) != 3 {
		t.Fatalf("reloaded %d records, want 3", len(again.records))
	}
}

// A daemon stopped between a renamed rank's new file and the removal of
// its old one leaves two records of one deal: loaded, only the newer
// generation's counts, so the deal is not paid twice.
func TestTwoRecordsOfOneDealLoadOnce(t *testing.T) {
	dir := t.TempDir()
	rq := testRequester(t, Config{Dir: dir})
	deal := market.Deal{DealTerms: market.DealTerms{ID: "deal-renamed", Price: "3600", GPUs: []string{"GPU-0"}, MaxDurationS: 60}}
	stale, renamed := newJobID(), newJobID()
	for id, gen := range map[string]int{stale: 0, renamed: 1} {
		rj := &Record{ID: id, Provider: "prov", Deal: deal, Last: &api.Job{}, Vouched: "0", ProviderGen: gen}
		if err := rq.saveRemote(rj); err != nil {
			t.Fatal(err)
		}
	}
	other := &Record{ID: newJobID(), Provider: "prov", Deal: market.Deal{DealTerms: market.DealTerms{ID: "deal-other"}}, Last: &api.Job{}, Vouched: "0"}
	if err := rq.saveRemote(other); err != nil {
		t.Fatal(err)
	}
	again := testRequester(t, Config{Dir: dir})
	if len(again.records) != 2 || again.records[renamed] == nil || again.records[stale] != nil || again.records[other.ID] == nil {
		t.Fatalf("loaded %d records %v: want the renamed one and the other deal's", len(again.records), slices.Collect(maps.Keys(again.records)))
	}
}

// A regrowth restarts every rank, the replacement too, from the newest
// checkpoint the gang saved while the replacement was prepared, not the
// one pinned when the restart began: that would throw the training in
// between away.
func TestRegrowthStartsFromTheNewestCheckpoint(t *testing.T) {
	for name, tc := range map[string]struct {
		savedMeanwhile bool
		want, toSpare  string
	}{
		"the gang saved one while the spare prepared": {savedMeanwhile: true, want: fakeCID("step 300"), toSpare: fakeCID("step 300")},
		"nothing newer: the spare keeps what it has":  {want: fakeCID("step 40")},
	} {
		t.Run(name, func(t *testing.T) {
			rq := testRequester(t, Config{})
			spec := jobs.Spec{Distributed: &jobs.Distributed{Nodes: 3, MinNodes: 2}, Checkpoint: &jobs.Checkpoint{}}
			a, b := newJobID(), newJobID()
			var old []*Record
			for r, id := range []string{a, b} {
				rj := &Record{ID: id, Spec: spec, Group: []string{a, b}, Rank: r, Last: &api.Job{}, Vouched: "0"}
				rq.records[id] = rj
				old = append(old, rj)
			}
			old[0].Elastic = &elasticState{Generation: 1}
			old[0].Checkpoint, old[0].CheckpointAt = fakeCID("step 40"), time.Now().Add(-time.Minute)

			g := rq.newGeneration(a, old, elasticPlan{act: actRestart, keep: []int{0, 1}, grow: true})
			spare := &Record{ID: newJobID(), Spec: spec, Restored: g.checkpoint}
			g.ranks = append(g.ranks, spare)
			if tc.savedMeanwhile {
				rq.mu.Lock()
				old[1].Checkpoint, old[1].CheckpointAt = fakeCID("step 300"), time.Now()
				rq.mu.Unlock()
			}
			rq.refreshCheckpoint(g)

			_, kept := g.request(1, 2, b, nil)
			if rr := kept.(regroupRequest); rr.Checkpoint != tc.want {
				t.Errorf("a kept rank restarts from %s, want %s", rr.Checkpoint, tc.want)
			}
			w, sent := g.request(2, 2, spare.ID, nil)
			if gr := sent.(goRequest); w != wireGo || gr.Checkpoint != tc.toSpare {
				t.Errorf("the spare is sent %s %+v, want go from %q", w.id, gr, tc.toSpare)
			}
			for r, rj := range g.ranks {
				if rj.Restored != tc.want {
					t.Errorf("rank %d restored %s, want %s", r, rj.Restored, tc.want)
				}
			}
		})
	}
}
