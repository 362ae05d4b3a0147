package jobs

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// checkpoint and the elastic fields of distributed are refused with the
// field named; good ones parse.
func TestCheckpointAndElasticSpec(t *testing.T) {
	const head = "image: busybox\n"
	const c = "bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy"
	for name, tc := range map[string]struct{ yaml, want string }{
		"every too short":     {head + "checkpoint: {every: 10ms}\n", "checkpoint.every"},
		"every not a time":    {head + "checkpoint: {every: often}\n", "checkpoint.every"},
		"from not a CID":      {head + "checkpoint: {from: nope}\n", `checkpoint.from: "nope" is not a CID`},
		"min over nodes":      {head + "distributed: {nodes: 2, min_nodes: 3}\n", "distributed.min_nodes: 3"},
		"restarts, no min":    {head + "distributed: {nodes: 2, max_restarts: 2}\n", "distributed.max_restarts: only an elastic job"},
		"restarts too many":   {head + "distributed: {nodes: 2, min_nodes: 1, max_restarts: 101}\n", "distributed.max_restarts: 101"},
		"elastic on the host": {head + "distributed: {nodes: 2, min_nodes: 1, network: host}\n", "distributed.min_nodes: an elastic job"},
		"checkpoint":          {head + "checkpoint: {every: 30s, from: " + c + "}\n", ""},
		"elastic":             {head + "distributed: {nodes: 3, min_nodes: 2, max_restarts: 4}\ncheckpoint: {}\n", ""},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := ParseSpec([]byte(tc.yaml))
			if tc.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one containing %q", err, tc.want)
			}
		})
	}
}

// A spec without checkpoint hashes as before: deals made by daemons
// without the field still match.
func TestCheckpointKeepsSpecHash(t *testing.T) {
	s := fakeSpec()
	before, err := s.Hash()
	if err != nil {
		t.Fatal(err)
	}
	s.Checkpoint, s.Distributed = nil, &Distributed{Nodes: 2}
	with, _ := s.Hash()
	s.Distributed.MinNodes = 1
	elastic, _ := s.Hash()
	if before == with || with == elastic {
		t.Fatal("the fields do not reach the hash")
	}
}

// checkpointCases: /checkpoints made, fetched, added and reported.
func checkpointCases() []stateCase {
	from := testCID("an earlier checkpoint").String()
	every := func(s *Spec) { s.Checkpoint = &Checkpoint{Every: "1s"} }
	return []stateCase{
		{
			name: "what the job writes under /checkpoints is added and reported",
			spec: every,
			act: func(t *testing.T, e *fakeEnv, id string) {
				waitRunning(t, e.m, id)
				dir := e.rt.createdSpecs()[0].Checkpoints
				if st, err := os.Stat(dir); err != nil || st.Mode().Perm() != 0o777 {
					t.Fatalf("/checkpoints on the host: %v %v", st, err)
				}
				if err := os.WriteFile(filepath.Join(dir, "step"), []byte("1"), 0o644); err != nil {
					t.Fatal(err)
				}
				j := await(t, e.m, id, "a checkpoint", time.Minute, func(j *Job) bool { return j.CheckpointCID != "" })
				if j.CheckpointCID != testCID(dir).String() || j.CheckpointAt == nil {
					t.Errorf("checkpoint %q at %v, want %s", j.CheckpointCID, j.CheckpointAt, testCID(dir))
				}
				endAll(e)
			},
			state: Completed, exit: 0,
		},
		{
			name:  "an empty /checkpoints is no checkpoint",
			spec:  every,
			setup: func(e *fakeEnv) { e.rt.exits = []int{0} },
			state: Completed, exit: 0,
			check: func(t *testing.T, e *fakeEnv, j *Job) {
				if j.CheckpointCID != "" {
					t.Errorf("checkpoint %s of nothing", j.CheckpointCID)
				}
			},
		},
		{
			name:  "checkpoint.from is fetched into /checkpoints, writable by the job",
			spec:  func(s *Spec) { s.Checkpoint = &Checkpoint{From: from} },
			setup: func(e *fakeEnv) { e.fc.dirs = map[string]bool{from: true} },
			act: func(t *testing.T, e *fakeEnv, id string) {
				waitRunning(t, e.m, id)
				f := filepath.Join(e.rt.createdSpecs()[0].Checkpoints, "from")
				if st, err := os.Stat(f); err != nil || st.Mode().Perm() != 0o666 {
					t.Fatalf("the fetched checkpoint: %v %v", st, err)
				}
				endAll(e)
			},
			state: Completed, exit: 0,
			check: func(t *testing.T, e *fakeEnv, j *Job) {
				if j.CheckpointCID == "" {
					t.Error("the resumed checkpoint was not added at the exit")
				}
			},
		},
		{
			name:  "a checkpoint.from that is a file fails the job",
			spec:  func(s *Spec) { s.Checkpoint = &Checkpoint{From: from} },
			state: Failed, reason: "not a directory", exit: noExit,
		},
	}
}

// endAll ends every running container with exit 0.
func endAll(e *fakeEnv) {
	e.rt.mu.Lock()
	ids := make([]string, 0, len(e.rt.containers))
	for id := range e.rt.containers {
		ids = append(ids, id)
	}
	e.rt.mu.Unlock()
	for _, id := range ids {
		e.rt.end(id, 0)
	}
}
