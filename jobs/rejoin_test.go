package jobs

import (
	"context"
	"errors"
	"io"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aixblock/aixblock/p2p/p2ptest"
)

// closeCount is an io.Closer that counts its closes.
type closeCount struct{ n atomic.Int32 }

func (c *closeCount) Close() error { c.n.Add(1); return nil }

// rankCases: a distributed rank's record (its holder named), as the
// restarted daemon finds it with its holder and container.
func rankCases() []reattachCase {
	rank := func(j *Job) { j.NetHolder = "holder" }
	both := func(rt *fakeRuntime) { rt.add("holder", true, 0); rt.add("old", true, 0) }
	removed := func(t *testing.T, rt *fakeRuntime, _ string) {
		if !rt.called("Remove", "holder") || !rt.called("Remove", "old") {
			t.Errorf("calls %q", rt.callList())
		}
	}
	net := &closeCount{}
	return []reattachCase{
		{
			name: "a rank whose holder ended fails", job: rank,
			setup: func(rt *fakeRuntime) { rt.add("holder", false, 0); rt.add("old", true, 0) },
			state: Failed, reason: "the rank's job network ended with it", exit: noExit, check: removed,
		},
		{
			name: "a rank the node does not rejoin fails", job: rank, setup: both,
			cfg:   func(c *Config) { c.RejoinWindow = 10 * time.Millisecond },
			state: Failed, reason: "the rank's job network was not rejoined", exit: 143, check: removed,
		},
		{
			name: "a rank rejoined goes on to its end", job: rank, setup: both,
			rejoin: func(t *testing.T, m *Manager) { rejoinOnce(t, m, net) },
			act: func(t *testing.T, rt *fakeRuntime) {
				p2ptest.WaitFor(t, 10*time.Second, func() bool { return rt.called("Wait", "old") }, "the wait on the old container")
				rt.end("old", 0)
			},
			state: Completed, exit: 0,
			check: func(t *testing.T, rt *fakeRuntime, dir string) {
				removed(t, rt, dir)
				if n := net.n.Load(); n != 1 {
					t.Errorf("the rejoined network closed %d times at the end, want 1", n)
				}
			},
		},
	}
}

// rejoinOnce rejoins the reattached rank with a network that records
// the namespace it is given, and checks that nothing else may rejoin:
// the rank a second time, a job this node does not hold.
func rejoinOnce(t *testing.T, m *Manager, net io.Closer) {
	t.Helper()
	var ns string
	join := func(_ context.Context, nsPath string) (io.Closer, error) {
		ns = nsPath
		return net, nil
	}
	ctx := context.Background()
	if err := m.RejoinNetwork(ctx, reattachID, Rejoin{JoinNetwork: join, Elastic: time.Minute}); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(ns, "/proc/self/fd/") {
		t.Fatalf("joined in %q, want the holder's namespace by descriptor", ns)
	}
	if err := m.RejoinNetwork(ctx, reattachID, Rejoin{JoinNetwork: join}); err == nil {
		t.Fatal("a rank rejoined twice")
	}
	if err := m.RejoinNetwork(ctx, "00000000000000ff", Rejoin{JoinNetwork: join}); !errors.Is(err, ErrNotFound) {
		t.Fatalf("rejoin of a job not here: %v, want ErrNotFound", err)
	}
	if !m.elastic(&Job{ID: reattachID}) {
		t.Fatal("the rejoined rank does not wait for its gang's restart")
	}
}
