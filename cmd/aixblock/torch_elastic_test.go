package main

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// TestTorchElastic runs the elastic example (jobs/examples/elastic.yaml:
// real PyTorch, gloo DDP, 3 ranks, min_nodes 2) through TestElasticRankLost's
// scene: the SIGKILL of one rank's provider daemon mid-training. The job
// goes on with two ranks from its last checkpoint (model, optimizer and
// step), grows back to three with the spare provider from the market and
// completes, and rank 0's loss at the end is lower than before the kill.
func TestTorchElastic(t *testing.T) {
	torchImageBuilt(t)
	repos, daemons := ddpNetwork(t, 4)
	req := repos[4]
	t.Cleanup(func() { logElastic(t, daemons) })
	path := exampleSpec(t, req, "elastic", `max_price: "5"`, `max_price: "20"`) // ddpNetwork's providers ask 10
	id := strings.TrimSpace(mustRun(t, req, "job", "submit", path))
	killRankMidJob(t, repos[:4], daemons, req, id)
	shrinkGrowComplete(t, req, id)
	logs := mustRun(t, req, "job", "logs", id)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("logs:\n%s", logs)
		}
	})
	gens := torchGenerations(logs)
	for i, g := range gens {
		if n := len(g.losses); n > 0 {
			t.Logf("generation %d: world %d, resumed from step %d, loss %.6f -> %.6f (%d lines)", i, g.world, g.resumedFrom, g.losses[0], g.losses[n-1], n)
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
	shrunk := false
	for _, g := range gens[1 : len(gens)-1] {
		shrunk = shrunk || (g.world == 2 && g.resumedFrom > 0)
	}
	if !shrunk {
		t.Fatalf("no generation of two ranks resumed from a checkpoint: %+v", gens)
	}
	before, after = first.losses[len(first.losses)-1], last.losses[len(last.losses)-1]
	if !(after < before) {
		t.Fatalf("rank 0's loss %g at the end, %g before the kill", after, before)
	}
	return before, after
}

// torchGeneration is one run of rank 0 of jobs/examples/elastic/train.py:
// its world size, the step it resumed from, and the losses it logged.
type torchGeneration struct {
	world, resumedFrom int
	losses             []float64
}

var (
	resumedLine = regexp.MustCompile(`resumed from step (\d+) loss \S+ world (\d+)`)
	stepLine    = regexp.MustCompile(`(?:^|\s)step \d+ loss ([0-9.eE+-]+) world \d+`)
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
			loss, err := strconv.ParseFloat(m[1], 64)
			if err == nil {
				gens[len(gens)-1].losses = append(gens[len(gens)-1].losses, loss)
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
	want := []torchGeneration{{3, 0, []float64{7.797954, 5.5}}, {2, 20, []float64{5.3}}, {3, 40, nil}}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("got %v, want %v", got, want)
	}
}
