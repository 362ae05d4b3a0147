package jobs

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aixblock/aixblock/p2p/p2ptest"
)

// awaitGeneration waits for job id to run as generation gen.
func awaitGeneration(t *testing.T, e *fakeEnv, id string, gen int) {
	t.Helper()
	await(t, e.m, id, "the restart", time.Minute, func(j *Job) bool { return j.Generation == gen && j.Regroup == "" && j.State == Running })
}

// regroupCases: an elastic rank held for its gang's restart, restarted,
// or ended when none comes.
func regroupCases() []stateCase {
	elastic := func(hold time.Duration) func(*fakeEnv) SubmitOptions {
		return func(*fakeEnv) SubmitOptions { return SubmitOptions{Elastic: hold} }
	}
	ckpt := testCID("generation 1's checkpoint").String()
	return []stateCase{
		{
			name: "an elastic rank that failed waits for its gang's restart and runs again",
			opts: elastic(time.Minute), setup: func(e *fakeEnv) { e.rt.exits = []int{1} },
			act: func(t *testing.T, e *fakeEnv, id string) {
				j := await(t, e.m, id, "the hold", time.Minute, func(j *Job) bool { return j.Regroup != "" })
				if j.State != Running || !strings.Contains(j.Reason, "waiting up to 1m0s for its gang's restart") {
					t.Errorf("held as %s %q", j.State, j.Reason)
				}
				if err := e.m.Regroup(id, Regroup{Generation: 0}); err == nil {
					t.Error("a restart of no newer generation was taken")
				}
				if err := e.m.Regroup(id, Regroup{Generation: 1, Env: []string{"WORLD_SIZE=2", "RANK=1"}}); err != nil {
					t.Fatal(err)
				}
				awaitGeneration(t, e, id, 1)
				if c := e.rt.createdSpecs(); len(c) != 2 || !slices.Contains(c[1].Env, "WORLD_SIZE=2") {
					t.Fatalf("containers made %+v, want a second with the new contract", c)
				}
				endAll(e)
			},
			state: Completed, exit: 0, history: "pending preparing running running running uploading completed",
		},
		{
			name: "a running elastic rank stops for its gang's restart, with the checkpoint named",
			spec: func(s *Spec) { s.Checkpoint = &Checkpoint{} },
			opts: elastic(time.Minute), setup: func(e *fakeEnv) { e.fc.dirs = map[string]bool{ckpt: true} },
			act: func(t *testing.T, e *fakeEnv, id string) {
				waitRunning(t, e.m, id)
				if err := e.m.Regroup(id, Regroup{Generation: 1, Checkpoint: ckpt}); err != nil {
					t.Fatal(err)
				}
				awaitGeneration(t, e, id, 1)
				c := e.rt.createdSpecs()
				b, err := os.ReadFile(filepath.Join(c[len(c)-1].Checkpoints, "from"))
				if err != nil || string(b) != ckpt {
					t.Fatalf("/checkpoints after the restart: %q %v, want checkpoint %s", b, err, ckpt)
				}
				e.rt.mu.Lock()
				graces := slices.Clone(e.rt.graces)
				e.rt.mu.Unlock()
				if len(graces) == 0 || graces[0] != 0 {
					t.Fatalf("the cut run was stopped with graces %v, want at once (its training is thrown away)", graces)
				}
				endAll(e)
			},
			state: Completed, exit: 0,
		},
		{
			name: "a restart that comes while the last one is made follows it",
			opts: elastic(time.Minute), setup: func(e *fakeEnv) { e.rt.exits = []int{1} },
			act: func(t *testing.T, e *fakeEnv, id string) {
				await(t, e.m, id, "the hold", time.Minute, func(j *Job) bool { return j.Regroup != "" })
				if err := e.m.Regroup(id, Regroup{Generation: 1}); err != nil {
					t.Fatal(err)
				}
				if err := e.m.Regroup(id, Regroup{Generation: 2}); err != nil {
					t.Fatal(err)
				}
				if err := e.m.Regroup(id, Regroup{Generation: 2}); err == nil {
					t.Error("the same generation was taken twice")
				}
				awaitGeneration(t, e, id, 2)
				endAll(e)
			},
			state: Completed, exit: 0,
		},
		{
			name: "an elastic rank whose gang does not restart in time fails",
			opts: elastic(20 * time.Millisecond), setup: func(e *fakeEnv) { e.rt.exits = []int{3} },
			state: Failed, reason: "exited with code 3; its gang did not restart within 20ms", exit: 3,
		},
		{
			name:  "a rank that is not elastic fails at its exit",
			setup: func(e *fakeEnv) { e.rt.exits = []int{3} },
			act: func(t *testing.T, e *fakeEnv, id string) {
				waitJob(t, e.m, id, time.Minute)
				if err := e.m.Regroup(id, Regroup{Generation: 1}); err == nil {
					t.Error("a restart of a job that is not elastic was taken")
				}
			},
			state: Failed, reason: "exited with code 3", exit: 3,
		},
	}
}

// goCheckpointCases: a replacement that joins an elastic gang starts from
// the checkpoint its go names, the gang's newest.
func goCheckpointCases() []stateCase {
	ckpt := testCID("generation 1's checkpoint").String()
	return []stateCase{
		{
			name:  "a replacement starts from the newer checkpoint its go names",
			spec:  func(s *Spec) { s.Checkpoint = &Checkpoint{} },
			opts:  func(*fakeEnv) SubmitOptions { return SubmitOptions{Gate: true, Elastic: time.Minute} },
			setup: func(e *fakeEnv) { e.fc.dirs = map[string]bool{ckpt: true} },
			act: func(t *testing.T, e *fakeEnv, id string) {
				p2ptest.WaitFor(t, 10*time.Second, func() bool { return e.m.Prepared(id) }, "prepared")
				if err := e.m.Go(id, []string{"RANK=2"}, "not-a-cid"); err == nil || !strings.Contains(err.Error(), "checkpoint") {
					t.Fatalf("go with a checkpoint that is no CID: %v", err)
				}
				if err := e.m.Go(id, []string{"RANK=2"}, ckpt); err != nil {
					t.Fatal(err)
				}
				waitRunning(t, e.m, id)
				c := e.rt.createdSpecs()
				b, err := os.ReadFile(filepath.Join(c[0].Checkpoints, "from"))
				if err != nil || string(b) != ckpt {
					t.Fatalf("/checkpoints at the start: %q %v, want checkpoint %s", b, err, ckpt)
				}
				endAll(e)
			},
			state: Completed, exit: 0,
		},
		{
			name:  "go names a checkpoint for a spec without one: refused, the rank still waits",
			opts:  func(*fakeEnv) SubmitOptions { return SubmitOptions{Gate: true} },
			setup: func(e *fakeEnv) { e.rt.exits = []int{0} },
			act: func(t *testing.T, e *fakeEnv, id string) {
				p2ptest.WaitFor(t, 10*time.Second, func() bool { return e.m.Prepared(id) }, "prepared")
				if err := e.m.Go(id, nil, ckpt); err == nil || !strings.Contains(err.Error(), "none in the spec") {
					t.Fatalf("go with a checkpoint for a spec without one: %v", err)
				}
				if err := e.m.Go(id, nil, ""); err != nil {
					t.Fatalf("the refused go took the gate: %v", err)
				}
			},
			state: Completed, exit: 0,
		},
	}
}
