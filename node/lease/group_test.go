package lease

import (
	"context"
	"strings"
	"testing"

	"github.com/aixblock/aixblock/jobs"
)

// Rank 0's view stands for the whole distributed job: not done while a
// rank runs, failed when a rank failed or came back without a result.
func TestGroupView(t *testing.T) {
	const cidA = "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku"
	for _, c := range []struct {
		name         string
		rank0, rank1 jobs.Job
		elastic      *elasticState
		state        jobs.State
		reason       string
	}{
		{"rank 1 still running", jobs.Job{State: jobs.Completed, ResultCID: cidA}, jobs.Job{State: jobs.Running}, nil,
			jobs.Running, "waiting for ranks 1"},
		{"rank 1 failed", jobs.Job{State: jobs.Running}, jobs.Job{State: jobs.Failed, Reason: "exited with code 3"}, nil,
			jobs.Failed, "rank 1 on provider P1 failed: exited with code 3"},
		{"rank 0 failed first", jobs.Job{State: jobs.Failed, Reason: "out of memory"}, jobs.Job{State: jobs.Failed, Reason: "another rank failed"}, nil,
			jobs.Failed, "out of memory"},
		{"rank 1 without a result", jobs.Job{State: jobs.Completed, ResultCID: cidA}, jobs.Job{State: jobs.Completed}, nil,
			jobs.Failed, "ranks 1 completed without a result CID"},
		// An elastic job that lost a rank restarts (minutes when a
		// replacement prepares first); it showed failed meanwhile.
		{"an elastic job's rank 1 lost", jobs.Job{State: jobs.Running}, jobs.Job{State: jobs.Failed, Reason: "provider P1 unreachable for 10s"}, &elasticState{},
			jobs.Running, "rank 1 lost (failed: provider P1 unreachable for 10s): the gang restarts"},
		{"an elastic job's rank 0 lost", jobs.Job{State: jobs.Failed, Reason: "exited with code 1"}, jobs.Job{State: jobs.Running}, &elasticState{},
			jobs.Running, "rank 0 lost"},
		{"an elastic job out of restarts", jobs.Job{State: jobs.Running}, jobs.Job{State: jobs.Failed, Reason: "exited with code 3"}, &elasticState{Over: true},
			jobs.Failed, "rank 1 on provider P1 failed: exited with code 3"},
	} {
		t.Run(c.name, func(t *testing.T) {
			group := []string{"j0", "j1"}
			r0 := &Record{ID: "j0", Provider: "P0", Last: reply(c.rank0), Group: group, Rank: 0, Elastic: c.elastic}
			r1 := &Record{ID: "j1", Provider: "P1", Last: reply(c.rank1), Group: group, Rank: 1}
			n := makeRequester(&base{})
			n.records["j0"], n.records["j1"] = r0, r1
			got := n.groupView(context.Background(), r0)
			if got.State != c.state || !strings.Contains(got.Reason, c.reason) {
				t.Fatalf("view %s %q, want %s with %q", got.State, got.Reason, c.state, c.reason)
			}
			if got.State != jobs.Completed && got.ResultCID != "" {
				t.Fatalf("an unfinished job shows result %s", got.ResultCID)
			}
			// Rank 1 is shown as itself.
			if v := n.groupView(context.Background(), r1); v.State != c.rank1.State {
				t.Fatalf("rank 1's view %s, want its own %s", v.State, c.rank1.State)
			}
		})
	}
}
