package main

import (
	"fmt"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/aixblock/aixblock/p2p/p2ptest"
)

// rejoinSteps is the rank's work: long enough that a provider's restart
// falls in the middle of it.
const rejoinSteps = 1500

// A distributed job's rank outlives its provider daemon's restart: the
// provider of rank 1 is SIGKILLed mid-job and started again on its repo
// within the requester's grace. The rank's device stayed in its holder's
// namespace, the restarted daemon rejoins it, and the job completes on
// its first run: no regroup or restart in job status, the rank's
// container the same, its steps run once through, and its pay going on.
func TestDistributedRankSurvivesRestart(t *testing.T) {
	ddpImage(t)
	info, file := startDevchain(t)
	flags := []string{"--voucher-interval", restartInterval.String()}
	prov := chainNode{init: []string{"--gpu-mock", "dgxh100", "--price", "*=10"}, flags: flags}
	net := startChainNet(t, "e2erejoin", info, file, chainNode{flags: flags}, prov, prov, chainNode{flags: flags})
	req := net.repos[3]
	waitProviders(t, req, 2)
	spec := filepath.Join(t.TempDir(), "ddp.yaml")
	os.WriteFile(spec, fmt.Appendf(nil, "name: ddp\nimage: aixblock-test/ddp:latest\nresources: {gpus: 1, memory_mib: 128}\n"+
		"distributed: {nodes: 2}\nmax_price: \"20\"\nenv: {STEPS: \"%d\", STEP_DELAY_MS: \"20\"}\n", rejoinSteps), 0o600)
	id := strings.TrimSpace(mustRun(t, req, "job", "submit", spec))
	waitState(t, req, id, func(s string) bool { return s == "running" })
	victim, rank := otherRank(t, net.repos[1:3], req, id)
	victim++ // net.repos[0] is the bootstrap node
	t.Cleanup(func() { removeJobContainers(id, rank) })
	before := waitRankStarted(t, net.repos[victim], rank)
	paid := vouchedTo(t, net.repos[victim])
	t.Logf("restarting provider %d (rank job %s, container %s, vouched %s)", victim, rank, before.ContainerID, paid)
	net.daemons[victim].cmd.Process.Signal(syscall.SIGKILL)
	<-net.daemons[victim].done
	os.Remove(filepath.Join(net.repos[victim], "api")) // stale: startDaemon waits for the new one
	net.daemons[victim] = startDaemon(t, net.repos[victim], net.flags[victim]...)

	var st elasticStatus
	p2ptest.WaitFor(t, 4*time.Minute, func() bool {
		runJSON(t, req, &st, "job", "status", id)
		return terminal(st.State)
	}, "job %s to end", id)
	if st.State != "completed" || len(st.Events) != 0 {
		t.Fatalf("job %s: %s (%s); events %+v\n%s", id, st.State, st.Reason, st.Events, net.daemons[victim].stderr)
	}
	checkRankRanOnce(t, net.repos[victim], rank, before.ContainerID)
	p2ptest.WaitFor(t, 30*time.Second, func() bool { return cmpAmount(vouchedTo(t, net.repos[victim]), paid) > 0 },
		"no voucher for provider %d after its restart (vouched %s before)", victim, paid)
}

// otherRank is the index in repos of the provider of a rank of job id
// other than rank 0, and that rank's job ID.
func otherRank(t *testing.T, repos []string, req, id string) (int, string) {
	t.Helper()
	var list []struct {
		ID       string `json:"id"`
		Provider string `json:"provider"`
	}
	runJSON(t, req, &list, "job", "list")
	for i, repo := range repos {
		var p idInfo
		runJSON(t, repo, &p, "id")
		for _, j := range list {
			if j.ID != id && j.Provider == p.PeerID {
				return i, j.ID
			}
		}
	}
	t.Fatalf("no provider runs a rank of %s other than rank 0: %+v", id, list)
	return -1, ""
}

// rankStatus is a rank's job as its provider sees it.
type rankStatus struct {
	State       string `json:"state"`
	Reason      string `json:"reason"`
	ContainerID string `json:"container_id"`
	Restarts    int    `json:"restarts"`
}

// waitRankStarted waits for rank job rank to run its workload on the
// provider of repo (its first line logged) and returns its status.
func waitRankStarted(t *testing.T, repo, rank string) rankStatus {
	t.Helper()
	p2ptest.WaitFor(t, time.Minute, func() bool {
		return strings.Contains(run(t, repo, "job", "logs", rank).stdout, "rank 1 of 2")
	}, "rank job %s's workload to start", rank)
	var s rankStatus
	runJSON(t, repo, &s, "job", "status", rank)
	return s
}

// checkRankRanOnce: rank job rank completed in the container it had
// before the restart, started its workload once and ran every step.
func checkRankRanOnce(t *testing.T, repo, rank, container string) {
	t.Helper()
	var s rankStatus
	runJSON(t, repo, &s, "job", "status", rank)
	logs := mustRun(t, repo, "job", "logs", rank)
	switch {
	case s.State != "completed" || s.ContainerID != container || s.Restarts != 0:
		t.Fatalf("rank job %s after its provider's restart: %+v, want completed in container %s", rank, s, container)
	case strings.Count(logs, "rank 1 of 2") != 1:
		t.Fatalf("rank job %s started its workload more than once:\n%s", rank, logs)
	case !strings.Contains(logs, `"resumed_from":0`) || !strings.Contains(logs, fmt.Sprintf(`"steps":%d`, rejoinSteps)):
		t.Fatalf("rank job %s did not run its %d steps through:\n%s", rank, rejoinSteps, logs)
	}
}

// vouchedTo is the amount the provider of repo holds a voucher for ("0"
// without one).
func vouchedTo(t *testing.T, repo string) string {
	t.Helper()
	var chs channelsOut
	runJSON(t, repo, &chs, "wallet", "channels")
	if len(chs.Channels) == 0 || chs.Channels[0].Vouched == "" {
		return "0"
	}
	return chs.Channels[0].Vouched
}

// cmpAmount compares two amounts in base units.
func cmpAmount(a, b string) int {
	x, _ := new(big.Int).SetString(a, 10)
	y, _ := new(big.Int).SetString(b, 10)
	if x == nil || y == nil {
		return 0
	}
	return x.Cmp(y)
}

// removeJobContainers removes the containers of the rank jobs ids, and
// their holders, that a failed test may leave (a killed daemon's).
func removeJobContainers(ids ...string) {
	for _, id := range ids {
		exec.Command("docker", "rm", "-f", "aixblock-"+id, "aixblock-"+id+"-net").Run()
	}
}
