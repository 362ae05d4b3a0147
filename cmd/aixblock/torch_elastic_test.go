package main

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aixblock/aixblock/p2p/p2ptest"
)

// TestTorchElastic runs the elastic example (jobs/examples/elastic.yaml:
// real PyTorch, gloo DDP, 3 ranks, min_nodes 2) through TestElasticRankLost's
// scene: the SIGKILL of one rank's provider daemon mid-training. The job
// goes on with two ranks from its last checkpoint (model, optimizer and
// step), grows back to three with the spare provider from the market and
// completes, and rank 0's loss at the end is lower than before the kill.
// The spare's GPUs are faulted until rank 0 has logged a step on two
// ranks: on one machine a replacement is found at once, and the gang
// would grow back before the two ranks got to train.
func TestTorchElastic(t *testing.T) {
	torchImageBuilt(t)
	repos, daemons := ddpNetwork(t, 4)
	req, spare := repos[4], repos[3]
	t.Cleanup(func() { logElastic(t, daemons) })
	faultGPUs(t, spare)
	path := exampleSpec(t, req, "elastic", `max_price: "5"`, `max_price: "20"`, // ddpNetwork's providers ask 10
		`STEPS: "1500"`, `STEPS: "3000"`)
	id := strings.TrimSpace(mustRun(t, req, "job", "submit", path))
	killRankMidJob(t, repos[:3], daemons, req, id)
	waitEvent(t, req, id, "restarting 2 ranks from checkpoint")
	p2ptest.WaitFor(t, 3*time.Minute, func() bool {
		gens := torchGenerations(mustRun(t, req, "job", "logs", id))
		if n := len(gens); n > 0 && gens[n-1].world == 2 && len(gens[n-1].losses) > 0 {
			return true
		}
		var st elasticStatus
		runJSON(t, req, &st, "job", "status", id)
		return terminal(st.State) // growComplete says why
	}, "rank 0 of job %s to train on two ranks", id)
	healGPUs(t, spare)
	growComplete(t, req, id)
	logs := mustRun(t, req, "job", "logs", id)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("logs:\n%s", logs)
		}
	})
	gens := torchGenerations(logs)
	for i, g := range gens {
		if n := len(g.losses); n > 0 {
			t.Logf("generation %d: world %d, resumed from step %d, loss %.6f -> %.6f at step %d (%d lines)", i, g.world, g.resumedFrom, g.losses[0], g.losses[n-1], g.lastStep, n)
		} else {
			t.Logf("generation %d: world %d, resumed from step %d, no loss lines", i, g.world, g.resumedFrom)
		}
	}
	before, after := lossFellAcrossRestarts(t, gens)
	t.Logf("rank 0's loss: %.6f before the kill, %.6f at the end", before, after)
}

// lossFellAcrossRestarts checks the generations of rank 0's logs: the
// first ran on three ranks from scratch, a later one on two ranks from a
// checkpoint, the last on three again from a checkpoint; the loss it
// logged last is below the last loss before the first restart. It returns
// those two losses.
func lossFellAcrossRestarts(t *testing.T, gens []torchGeneration) (before, after float64) {
	t.Helper()
	if len(gens) < 3 {
		t.Fatalf("%d generations in rank 0's logs, want 3 or more", len(gens))
	}
	first, last := gens[0], gens[len(gens)-1]
	if first.world != 3 || first.resumedFrom != 0 || len(first.losses) == 0 {
		t.Fatalf("the first generation: %+v", first)
	}
	if last.world != 3 || last.resumedFrom == 0 || len(last.losses) == 0 {
		t.Fatalf("the last generation: %+v, want 3 ranks resumed from a checkpoint", last)
	}
	reached := -1 // the last step two ranks logged
	for _, g := range gens[1 : len(gens)-1] {
		if g.world == 2 && g.resumedFrom > 0 {
			reached = g.lastStep
		}
	}
	if reached < 0 {
		t.Fatalf("no generation of two ranks resumed from a checkpoint: %+v", gens)
	}
	// The growth restarts from the newest checkpoint pinned once the
	// replacement is ready; what the two ranks trained after it is lost:
	// the pin's lag (a snapshot a second, then a fetch) and the restart's.
	t.Logf("the gang grew back to 3 ranks from step %d; the 2 ranks had logged step %d", last.resumedFrom, reached)
	if lost := reached - last.resumedFrom; lost > maxStepsLostAtGrowth {
		t.Fatalf("the growth threw %d steps of the two ranks' training away (resumed from %d, they had reached %d), more than %d",
			lost, last.resumedFrom, reached, maxStepsLostAtGrowth)
	}
	before, after = first.losses[len(first.losses)-1], last.losses[len(last.losses)-1]
	if !(after < before) {
		t.Fatalf("rank 0's loss %g at the end, %g before the kill", after, before)
	}
	return before, after
}

// maxStepsLostAtGrowth is about 6 s of the example's training (40 ms a
// step): the checkpoint's lag behind the ranks, with room for a loaded
// machine. A growth from the checkpoint taken when the restart began
// lost 240 steps.
const maxStepsLostAtGrowth = 150

// torchGeneration is one run of rank 0 of jobs/examples/elastic/train.py:
// its world size, the step it resumed from, the losses it logged and the
// step of the last.
type torchGeneration struct {
	world, resumedFrom int
	losses             []float64
	lastStep           int
}

var (
	resumedLine = regexp.MustCompile(`resumed from step (\d+) loss \S+ world (\d+)`)
	stepLine    = regexp.MustCompile(`(?:^|\s)step (\d+) loss ([0-9.eE+-]+) world \d+`)
)

// torchGenerations splits the logs at each "resumed from" line (only rank
// 0 prints them and the step lines).
func torchGenerations(logs string) []torchGeneration {
	var gens []torchGeneration
	for _, l := range strings.Split(logs, "\n") {
		if m := resumedLine.FindStringSubmatch(l); m != nil {
			step, _ := strconv.Atoi(m[1])
			world, _ := strconv.Atoi(m[2])
			gens = append(gens, torchGeneration{world: world, resumedFrom: step})
			continue
		}
		if m := stepLine.FindStringSubmatch(l); m != nil && len(gens) > 0 {
			g := &gens[len(gens)-1]
			if loss, err := strconv.ParseFloat(m[2], 64); err == nil {
				g.losses = append(g.losses, loss)
				g.lastStep, _ = strconv.Atoi(m[1])
			}
		}
	}
	return gens
}

// TestTorchGenerations: rank 0's logs of an elastic job split into its runs.
func TestTorchGenerations(t *testing.T) {
	logs := "start world 3\nresumed from step 0 loss None world 3\nstep 0 loss 7.797954 world 3\n" +
		"step 10 loss 5.5 world 3\nsome other line\nstart world 2\nresumed from step 20 loss 5.4 world 2\n" +
		"[rank 0] step 20 loss 5.3 world 2\nfinal {\"rank\": 1}\nresumed from step 40 loss 4.1 world 3\n"
	got := torchGenerations(logs)
	want := []torchGeneration{{3, 0, []float64{7.797954, 5.5}, 10}, {2, 20, []float64{5.3}, 20}, {3, 40, nil, 0}}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("got %v, want %v", got, want)
	}
}
