package main

import (
	"encoding/json"
	"fmt"
	"math"
	"math/big"
	"math/rand"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/aixblock/aixblock/jobs/jobstest"
	"github.com/aixblock/aixblock/p2p/p2ptest"
)

// setConfig edits a repo's config.json.
func setConfig(t testing.TB, repo string, edit func(map[string]any)) {
	t.Helper()
	p := filepath.Join(repo, "config.json")
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	var c map[string]any
	json.Unmarshal(b, &c)
	edit(c)
	b, _ = json.MarshalIndent(c, "", "  ")
	os.WriteFile(p, b, 0o600)
}

// A job from a requester runs on a provider found in the market, paid
// through the escrow: results come back byte for byte, the provider
// redeems what it was vouched, and its balance rises by exactly that.
func TestJobThroughTheMarket(t *testing.T) {
	jobDocker(t)
	info, file := startDevchain(t, "--challenge", "3s")
	vouchers := func(c map[string]any) {
		m, _ := c["market"].(map[string]any)
		if m == nil {
			m = map[string]any{}
		}
		m["voucher_interval"] = "500ms"
		c["market"] = m
	}
	net := startChainNet(t, "e2etest", info, file,
		chainNode{init: []string{"--gpu-mock", "dgxh100", "--price", "mock-h100-80gb=36"}, config: vouchers}, // 0.01 tUSD per GPU-second
		chainNode{config: vouchers})
	provider, requester := net.repos[0], net.repos[1]
	waitProviders(t, requester, 1, "--gpu", "mock-h100-80gb")
	var before walletBalance
	runJSON(t, provider, &before, "wallet", "balance")
	id := runResultJob(t, provider, requester)
	// The final voucher reaches the provider; it redeems it.
	waitSettled(t, net.daemons[1].stderr, id)
	receiptsOnBothSides(t, provider, requester)
	p := redeemRaisesBalance(t, provider, before)
	withdrawTheRest(t, requester, p)
}

// receiptsOnBothSides: the ended deal left one receipt that both sides
// signed, which each holds, and which the requester's view of the
// provider counts as its own.
func receiptsOnBothSides(t *testing.T, provider, requester string) {
	t.Helper()
	var prov idInfo
	runJSON(t, provider, &prov, "id")
	type view struct {
		Summary struct {
			Completed int `json:"completed"`
			Evidence  struct {
				Own int `json:"own"`
			} `json:"evidence"`
		} `json:"summary"`
		Receipts []struct {
			Kind string `json:"kind"`
			Paid string `json:"paid"`
		} `json:"receipts"`
	}
	var got [2]view
	p2ptest.WaitFor(t, 30*time.Second, func() bool {
		for i, repo := range []string{requester, provider} {
			runJSON(t, repo, &got[i], "market", "receipts", prov.PeerID)
			if len(got[i].Receipts) != 1 || got[i].Receipts[0].Kind != "both" {
				return false
			}
		}
		return true
	}, "no receipt both sides signed: requester %+v, provider %+v", &got[0], &got[1])
	if s := got[0].Summary; s.Completed != 1 || s.Evidence.Own != 1 || got[0].Receipts[0].Paid == "0" {
		t.Fatalf("the requester's view %+v", got[0])
	}
	if out := mustRun(t, requester, "market", "receipts", prov.PeerID); !strings.Contains(out, "1 completed (0 verified)") {
		t.Fatalf("market receipts:\n%s", out)
	}
}

// runResultJob runs a job that writes a result through the market, and
// checks that its result comes back and that the provider ran it. It
// returns the job's ID.
func runResultJob(t *testing.T, provider, requester string) string {
	t.Helper()
	r := run(t, requester, "job", "run", "--gpus", "1", "--gpu-class", "mock-h100-80gb", "--max-price", "40",
		"--timeout", "10m", jobImage, "--", "write", "/outputs/result.txt", "computed remotely")
	if r.code != 0 {
		t.Fatalf("job run through the market: %+v", r)
	}
	id := strings.TrimSpace(strings.TrimPrefix(strings.SplitN(r.stderr, "\n", 2)[0], "job "))
	var s jobStatus
	runJSON(t, requester, &s, "job", "status", id)
	if s.State != "completed" || s.ResultCID == "" {
		t.Fatalf("status on the requester: %+v", s)
	}
	out := filepath.Join(t.TempDir(), "out")
	mustRun(t, requester, "job", "results", id, "-o", out)
	if b, _ := os.ReadFile(filepath.Join(out, "result.txt")); string(b) != "computed remotely" {
		t.Fatalf("results %q", b)
	}
	if l := mustRun(t, provider, "job", "list"); !strings.Contains(l, id) {
		t.Fatalf("the provider does not list the job:\n%s", l)
	}
	return id
}

// redeemRaisesBalance: the provider redeems, and its balance rises from
// before by exactly what it redeemed, which it returns.
func redeemRaisesBalance(t *testing.T, provider string, before walletBalance) *big.Int {
	t.Helper()
	var paid struct {
		Paid string `json:"paid"`
	}
	runJSON(t, provider, &paid, "wallet", "redeem")
	p, _ := new(big.Int).SetString(paid.Paid, 10)
	if p == nil || p.Sign() <= 0 {
		t.Fatalf("nothing redeemed: %+v", paid)
	}
	var after walletBalance
	runJSON(t, provider, &after, "wallet", "balance")
	b0, _ := new(big.Int).SetString(before.TokenBalance, 10)
	b1, _ := new(big.Int).SetString(after.TokenBalance, 10)
	if got := new(big.Int).Sub(b1, b0); got.Cmp(p) != 0 {
		t.Fatalf("provider balance rose by %s, redeemed %s", got, p)
	}
	t.Logf("the job cost %s base units (tUSD 6 decimals)", p)
	return p
}

// withdrawTheRest: the requester closes its channel, whose provider
// redeemed p; after the challenge period it withdraws exactly what was
// deposited and not redeemed.
func withdrawTheRest(t *testing.T, requester string, p *big.Int) {
	t.Helper()
	var chs channelsOut
	runJSON(t, requester, &chs, "wallet", "channels")
	if len(chs.Channels) != 1 {
		t.Fatalf("requester's channels: %+v", chs)
	}
	ch := chs.Channels[0]
	dep, _ := new(big.Int).SetString(ch.Deposited, 10)
	red, _ := new(big.Int).SetString(ch.Redeemed, 10)
	if red.Cmp(p) != 0 {
		t.Fatalf("channel redeemed %s, provider redeemed %s", red, p)
	}
	var rb0, rb1 walletBalance
	runJSON(t, requester, &rb0, "wallet", "balance")
	mustRun(t, requester, "wallet", "close", ch.Payee)
	runJSON(t, requester, &chs, "wallet", "channels")
	// Dev-chain blocks can run ahead of the wall clock (one second a block
	// at least); wait until the chain's closes_at has passed here too.
	time.Sleep(time.Until(time.Unix(int64(chs.Channels[0].ClosesAt)+1, 0)))
	// The next block (the dev chain seals an idle one every 2 s) passes
	// it on chain.
	p2ptest.WaitFor(t, 10*time.Second, func() bool {
		r := run(t, requester, "wallet", "withdraw", ch.Payee)
		if r.code != 0 && !strings.Contains(r.stderr, "ChallengePeriod") {
			t.Fatalf("withdraw: %+v", r)
		}
		return r.code == 0
	}, "withdraw still refused inside the challenge period")
	runJSON(t, requester, &rb1, "wallet", "balance")
	x0, _ := new(big.Int).SetString(rb0.TokenBalance, 10)
	x1, _ := new(big.Int).SetString(rb1.TokenBalance, 10)
	if got, want := new(big.Int).Sub(x1, x0), new(big.Int).Sub(dep, red); got.Cmp(want) != 0 {
		t.Fatalf("withdrew %s, want deposit %s minus redeemed %s = %s", got, dep, red, want)
	}
}

// A provider killed mid-job: the requester fails the job within the grace
// window, pays nothing past the last sight of it, and with a retry policy
// the job completes on another provider.
func TestProviderKilledMidJob(t *testing.T) {
	jobDocker(t)
	info, file := startDevchain(t)
	provider := func(price int) chainNode {
		return chainNode{init: []string{"--gpu-mock", "dgxh100", "--price", fmt.Sprintf("mock-h100-80gb=%d", price)}, flags: []string{"--voucher-interval", "500ms"}}
	}
	// Two providers; the first is cheaper.
	net := startChainNet(t, "e2ekill", info, file, provider(30), provider(35), chainNode{flags: []string{"--voucher-interval", "500ms"}})
	repos, daemons := net.repos, net.daemons
	requester := repos[2]
	var provIDs [2]idInfo
	runJSON(t, repos[0], &provIDs[0], "id")
	runJSON(t, repos[1], &provIDs[1], "id")
	waitProviders(t, requester, 2, "--gpu", "mock-h100-80gb")
	spec := filepath.Join(t.TempDir(), "job.yaml")
	os.WriteFile(spec, []byte("name: resilient\nimage: "+jobImage+"\nargs: [sleep, 4s]\nresources: {gpus: 1, gpu_class: mock-h100-80gb, memory_mib: 64}\nmax_price: \"50\"\nretry: {attempts: 1}\n"), 0o600)
	id := strings.TrimSpace(mustRun(t, requester, "job", "submit", spec))
	waitState(t, requester, id, func(s string) bool { return s == "running" })
	if l := mustRun(t, repos[0], "job", "list"); !strings.Contains(l, id) {
		t.Fatalf("the cheaper provider does not run the job:\n%s", l)
	}
	killed := time.Now()
	daemons[0].cmd.Process.Signal(syscall.SIGKILL)
	<-daemons[0].done

	s := waitState(t, requester, id, terminal)
	if s.State != "failed" || !strings.Contains(s.Reason, "unreachable") || !strings.Contains(s.Reason, "retried as ") {
		t.Fatalf("after the kill: %+v", s)
	}
	if took := time.Since(killed); took > 20*time.Second {
		t.Fatalf("the failure took %s to show", took)
	}
	_, next, _ := strings.Cut(s.Reason, "retried as ")
	retried := strings.Fields(next)[0]
	s2 := waitState(t, requester, retried, terminal)
	if s2.State != "completed" {
		t.Fatalf("the retry: %+v", s2)
	}
	if l := mustRun(t, repos[1], "job", "list"); !strings.Contains(l, retried) {
		t.Fatalf("the other provider did not run the retry:\n%s", l)
	}
}

// Twenty jobs from two requesters across three providers at once: every
// submission ends completed or failed with a reason (or is refused with
// one), none is lost, and no GPU runs two jobs at once.
func TestManyJobsAtOnce(t *testing.T) {
	jobDocker(t)
	dir := testnetUp(t)
	requesters := []string{filepath.Join(dir, "node0"), filepath.Join(dir, "node1")}
	type sub struct {
		repo, id, err string
	}
	subs := make(chan sub, 20)
	var wg sync.WaitGroup
	for i := 0; i < 20; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			repo := requesters[i%2]
			r := run(t, repo, "job", "run", "-d", "--gpus", "1", "--max-price", "5", jobImage, "--", "sleep", "1s")
			subs <- sub{repo, strings.TrimSpace(r.stdout), strings.TrimSpace(r.stderr)}
		}(i)
	}
	wg.Wait()
	close(subs)
	completed, refused := 0, 0
	for s := range subs {
		if s.id == "" {
			if s.err == "" {
				t.Fatal("a submission failed without a reason")
			}
			refused++
			t.Logf("refused: %s", s.err)
			continue
		}
		st := waitState(t, s.repo, s.id, terminal)
		switch {
		case st.State == "completed":
			completed++
		case st.Reason == "":
			t.Fatalf("job %s %s without a reason", s.id, st.State)
		default:
			t.Logf("job %s %s: %s", s.id, st.State, st.Reason)
		}
	}
	t.Logf("%d completed, %d refused at submission", completed, refused)
	if completed < 10 {
		t.Fatalf("only %d of 20 jobs completed", completed)
	}
	// No GPU ran two jobs at once, on any provider.
	type span struct {
		id         string
		start, end time.Time
	}
	for _, p := range []string{"node1", "node2", "node3"} {
		var list []struct {
			ID         string     `json:"id"`
			GPUs       []string   `json:"gpus"`
			StartedAt  *time.Time `json:"started_at"`
			FinishedAt *time.Time `json:"finished_at"`
		}
		runJSON(t, filepath.Join(dir, p), &list, "job", "list")
		byGPU := map[string][]span{}
		for _, j := range list {
			if j.StartedAt == nil || j.FinishedAt == nil {
				continue
			}
			for _, g := range j.GPUs {
				for _, o := range byGPU[g] {
					if j.StartedAt.Before(o.end) && o.start.Before(*j.FinishedAt) {
						t.Fatalf("%s: GPU %s ran jobs %s and %s at once", p, g, o.id, j.ID)
					}
				}
				byGPU[g] = append(byGPU[g], span{j.ID, *j.StartedAt, *j.FinishedAt})
			}
		}
	}
}

// A GPU fault fails the job with the GPU's reason, and the requester pays
// only up to the fault; a requester without funds is refused before
// anything runs.
func TestGPUFaultAndNoFunds(t *testing.T) {
	jobDocker(t)
	dir := testnetUp(t, "--nodes", "2")
	req, prov := filepath.Join(dir, "node0"), filepath.Join(dir, "node1")

	id := strings.TrimSpace(mustRun(t, req, "job", "run", "-d", "--gpus", "1", "--max-price", "5", jobImage, "--", "sleep", "30s"))
	waitState(t, req, id, func(s string) bool { return s == "running" })
	var pj struct {
		GPUs []string `json:"gpus"`
	}
	runJSON(t, prov, &pj, "job", "status", id)
	var inv []struct {
		Index int    `json:"index"`
		UUID  string `json:"uuid"`
	}
	runJSON(t, prov, &inv, "gpu", "list")
	idx := -1
	for _, g := range inv {
		if len(pj.GPUs) > 0 && g.UUID == pj.GPUs[0] {
			idx = g.Index
		}
	}
	if idx < 0 {
		t.Fatalf("the job's GPU %v is not in the provider's inventory", pj.GPUs)
	}
	faultAt := time.Now()
	mustRun(t, prov, "gpu", "inject", "--gpu", fmt.Sprint(idx), "--xid", "79")
	s := waitState(t, req, id, terminal)
	if s.State != "failed" || !strings.Contains(s.Reason, "unhealthy") || !strings.Contains(s.Reason, "XID 79") {
		t.Fatalf("after the GPU fault: %+v", s)
	}
	// Paid up to the fault, not the 30 s asked for: at 2 tUSD per GPU-hour
	// 30 s would be 16 667 base units. Checked once the requester has
	// delivered the job's last voucher, so a later, larger one cannot be
	// missed.
	waitSettled(t, logFile(filepath.Join(dir, "node0.log")), id)
	var paid struct {
		Paid string `json:"paid"`
	}
	runJSON(t, prov, &paid, "wallet", "redeem")
	p, _ := new(big.Int).SetString(paid.Paid, 10)
	ran := time.Since(faultAt) + 10*time.Second // generous: start-up plus the fault's detection
	if max := new(big.Int).SetInt64(int64(ran.Seconds()*2e6/3600) + 1); p == nil || p.Cmp(max) > 0 {
		t.Fatalf("paid %s base units, more than %s for at most %s", paid.Paid, max, ran)
	}

	// A requester whose wallet holds nothing: a clear error, nothing runs.
	poor := filepath.Join(t.TempDir(), "repo")
	mustRun(t, poor, "init", "--network", "testnet", "--devchain", filepath.Join(dir, "devchain.json"))
	var id0 idInfo
	runJSON(t, req, &id0, "id")
	startDaemon(t, poor, "--network", "testnet", "--devchain", filepath.Join(dir, "devchain.json"), "--bootstrap", id0.Addrs[0])
	waitProviders(t, poor, 1, "--gpu", "mock-h100-80gb")
	r := run(t, poor, "job", "run", "--gpus", "1", "--max-price", "5", jobImage, "--", "echo", "hi")
	if r.code == 0 || !strings.Contains(r.stderr, "insufficient funds") {
		t.Fatalf("a requester without funds: %+v", r)
	}
	var list []struct{ ID string }
	runJSON(t, poor, &list, "job", "list")
	if len(list) != 0 {
		t.Fatalf("jobs recorded for a refused submission: %+v", list)
	}
}

// A provider with a redeem policy is paid without anyone running
// `wallet redeem`.
func TestProviderRedeemsOnItsOwn(t *testing.T) {
	jobDocker(t)
	info, file := startDevchain(t)
	repos := []string{filepath.Join(t.TempDir(), "p"), filepath.Join(t.TempDir(), "r")}
	for i, repo := range repos {
		key := filepath.Join(t.TempDir(), "key")
		os.WriteFile(key, []byte(info.Accounts[i+1].PrivateKey), 0o600)
		args := []string{"init", "--network", "e2eredeem", "--devchain", file, "--wallet-key", key}
		if i == 0 {
			args = append(args, "--gpu-mock", "dgxh100", "--price", "*=36")
		}
		mustRun(t, repo, args...)
	}
	startDaemon(t, repos[0], "--voucher-interval", "500ms", "--redeem-every", "1s")
	var pid idInfo
	runJSON(t, repos[0], &pid, "id")
	startDaemon(t, repos[1], "--voucher-interval", "500ms", "--bootstrap", pid.Addrs[0])
	var before walletBalance
	runJSON(t, repos[0], &before, "wallet", "balance")
	waitProviders(t, repos[1], 1, "--gpu", "mock-h100-80gb")
	mustRun(t, repos[1], "job", "run", "--gpus", "1", "--max-price", "40", jobImage, "--", "sleep", "1s")
	var after walletBalance
	p2ptest.WaitFor(t, 15*time.Second, func() bool {
		runJSON(t, repos[0], &after, "wallet", "balance")
		return after.TokenBalance != before.TokenBalance
	}, "the provider never redeemed")
	t.Logf("paid on its own: %s -> %s", before.TokenBalanceUnits, after.TokenBalanceUnits)
}

// A distributed job across two providers: a deal per rank, a gang start,
// the launcher contract; the ranks train one model (identical weights),
// rank 0's model comes back as the result.
// A distributed job over 2 and 3 providers: each rank trains on its own
// shard of one input CID; the ranks' final weights are identical and
// close to the model the shards were drawn from; the result is one
// directory holding every rank's outputs by rank.
func TestDistributedJob(t *testing.T) {
	ddpImage(t)
	for _, nodes := range []int{2, 3} {
		t.Run(fmt.Sprintf("%d providers", nodes), func(t *testing.T) { testDistributedJob(t, nodes) })
	}
}

func testDistributedJob(t *testing.T, nodes int) {
	repos, _ := ddpNetwork(t, nodes)
	req := repos[nodes]
	truth := []float64{1.5, 0.5, -2, 0.25} // not the workload's own
	cid := addDDPShards(t, req, nodes, truth)
	// Every rank probes what a rank must not reach: the providers' API,
	// gateway and libp2p ports on loopback, and a listener of this test's
	// on every host address (which a bridge network's containers would
	// reach at docker0's).
	probes := hostProbes(t, repos[:nodes])
	spec := filepath.Join(t.TempDir(), "ddp.yaml")
	os.WriteFile(spec, []byte(fmt.Sprintf("name: ddp\nimage: aixblock-test/ddp:latest\nresources: {gpus: 1, memory_mib: 128}\n"+
		"distributed: {nodes: %d, framework: pytorch}\nmax_price: \"20\"\n"+
		"inputs: [{cid: %s, path: /inputs/shards}]\n"+
		"env: {STEPS: \"300\", SHARD: \"/inputs/shards/shard-{rank}.csv\", PROBE: %q}\n", nodes, cid, strings.Join(probes, ","))), 0o600)
	id := strings.TrimSpace(mustRun(t, req, "job", "submit", spec))
	s := waitState(t, req, id, terminal)
	if s.State != "completed" {
		t.Fatalf("rank 0: %+v\n%s", s, mustRun(t, req, "job", "logs", id))
	}
	ranksOnProviders(t, req, nodes)
	placedDirect(t, req, id, nodes)
	logs := mustRun(t, req, "job", "logs", id)
	ranksAgree(t, logs, truth, nodes)
	ranksIsolated(t, logs, nodes, len(probes))
	resultByRank(t, req, id, nodes)
}

// placedDirect: the requester measured how every pair of bidders
// reaches each other before it awarded, and on loopback each is direct.
func placedDirect(t *testing.T, req, id string, nodes int) {
	t.Helper()
	var st struct {
		Placement *struct {
			Direct bool
			Note   string
			Pairs  []struct{ A, B, Path string }
		}
	}
	runJSON(t, req, &st, "job", "status", id)
	p := st.Placement
	if p == nil || !p.Direct || len(p.Pairs) != nodes*(nodes-1)/2 {
		t.Fatalf("placement of %d ranks among %d bidders: %+v", nodes, nodes, p)
	}
	for _, pair := range p.Pairs {
		if pair.Path != "direct" {
			t.Fatalf("pair %+v on loopback", pair)
		}
	}
	if out := mustRun(t, req, "job", "status", id); !strings.Contains(out, "reach each other directly") {
		t.Fatalf("job status shows no placement:\n%s", out)
	}
}

// addDDPShards adds a directory of a shard for each of nodes ranks: 200
// samples each of the linear model truth, with a little noise. It
// returns the directory's CID.
func addDDPShards(t *testing.T, req string, nodes int, truth []float64) string {
	t.Helper()
	shards := t.TempDir()
	rng := rand.New(rand.NewSource(int64(nodes)))
	for r := 0; r < nodes; r++ {
		var b strings.Builder
		for i := 0; i < 200; i++ {
			x := []float64{rng.Float64()*2 - 1, rng.Float64()*2 - 1, rng.Float64()*2 - 1}
			y := truth[3] + truth[0]*x[0] + truth[1]*x[1] + truth[2]*x[2] + rng.NormFloat64()*0.01
			fmt.Fprintf(&b, "%g,%g,%g,%g\n", x[0], x[1], x[2], y)
		}
		os.WriteFile(filepath.Join(shards, fmt.Sprintf("shard-%d.csv", r)), []byte(b.String()), 0o644)
	}
	var added struct {
		CID string `json:"cid"`
	}
	runJSON(t, req, &added, "data", "add", shards)
	return added.CID
}

// ranksOnProviders: the requester's jobs are the ranks, one on each
// provider, all completed.
func ranksOnProviders(t *testing.T, req string, nodes int) {
	t.Helper()
	var list []struct {
		ID       string `json:"id"`
		State    string `json:"state"`
		Provider string `json:"provider"`
	}
	runJSON(t, req, &list, "job", "list")
	provs := map[string]bool{}
	for _, j := range list {
		if st := waitState(t, req, j.ID, terminal); st.State != "completed" {
			t.Fatalf("rank job %s: %+v", j.ID, st)
		}
		provs[j.Provider] = true
	}
	if len(list) != nodes || len(provs) != nodes {
		t.Fatalf("%d rank jobs on %d providers, want %d on %d", len(list), len(provs), nodes, nodes)
	}
}

// ranksAgree: every rank's final weights, from rank 0's combined logs,
// are the same and close to truth.
func ranksAgree(t *testing.T, logs string, truth []float64, nodes int) {
	t.Helper()
	var weights []string
	for _, l := range strings.Split(logs, "\n") {
		if i := strings.Index(l, "final "); i >= 0 {
			var m struct{ Weights []float64 }
			json.Unmarshal([]byte(l[i+len("final "):]), &m)
			weights = append(weights, fmt.Sprint(m.Weights))
			for k, w := range m.Weights {
				if math.Abs(w-truth[k]) > 0.05 {
					t.Fatalf("weight %d = %g, want %g: %s", k, w, truth[k], l)
				}
			}
		}
	}
	if len(weights) != nodes {
		t.Fatalf("%d final lines in the logs:\n%s", len(weights), logs)
	}
	for _, w := range weights {
		if w != weights[0] {
			t.Fatalf("ranks' final weights differ: %v", weights)
		}
	}
}

// ranksIsolated: each rank saw loopback and the job network's device
// only, met the others at rank 0's overlay address, and reached none of
// the probes; rank 0's logs show every rank's lines, prefixed by rank.
func ranksIsolated(t *testing.T, logs string, nodes, probes int) {
	t.Helper()
	if strings.Count(logs, "interfaces: lo,aix0") != nodes || strings.Count(logs, "master 10.77.0.1:29500") != nodes {
		t.Fatalf("ranks not on the job network alone:\n%s", logs)
	}
	if strings.Contains(logs, ": reached") || strings.Count(logs, ": not reached") != nodes*probes {
		t.Fatalf("a rank reached a provider's service or the host:\n%s", logs)
	}
	for r := 0; r < nodes; r++ {
		if want := fmt.Sprintf("[rank %d] rank %d of %d: 200 samples", r, r, nodes); !strings.Contains(logs, want) {
			t.Fatalf("no %q in the logs of the distributed job:\n%s", want, logs)
		}
	}
}

// resultByRank: the result is a directory with every rank's outputs by
// rank.
func resultByRank(t *testing.T, req, id string, nodes int) {
	t.Helper()
	out := filepath.Join(t.TempDir(), "out")
	mustRun(t, req, "job", "results", id, "-o", out)
	if b, err := os.ReadFile(filepath.Join(out, "rank-0", "model.json")); err != nil || !strings.Contains(string(b), "weights") {
		t.Fatalf("rank-0/model.json: %v %s", err, b)
	}
	for r := 0; r < nodes; r++ {
		if st, err := os.Stat(filepath.Join(out, fmt.Sprintf("rank-%d", r))); err != nil || !st.IsDir() {
			t.Fatalf("rank-%d in the result: %v", r, err)
		}
	}
}

// ddpNetwork starts a dev chain, providers with their default config
// (distributed ranks on the job's private network) and a requester; it
// returns the repos (providers first) and daemons.
func ddpNetwork(t testing.TB, providers int) ([]string, []*daemon) {
	t.Helper()
	info, file := startDevchain(t)
	nodes := make([]chainNode, providers+1)
	for i := range nodes {
		nodes[i].flags = []string{"--voucher-interval", "500ms"}
		if i < providers {
			nodes[i].init = []string{"--gpu-mock", "dgxh100", "--price", "*=10"}
		}
	}
	net := startChainNet(t, "e2eddp", info, file, nodes...)
	waitProviders(t, net.repos[providers], providers)
	return net.repos, net.daemons
}

// ddpImage builds the distributed workload as aixblock-test/ddp:latest.
func ddpImage(t testing.TB) {
	t.Helper()
	jobstest.StaticImage(t, jobstest.Docker(t), jobstest.DDP, "aixblock-test/ddp:latest")
}

// Killing one rank's provider fails the distributed job on every rank.
func TestDistributedRankLost(t *testing.T) {
	ddpImage(t)
	repos, daemons := ddpNetwork(t, 3)
	req := repos[3]
	spec := filepath.Join(t.TempDir(), "ddp.yaml")
	os.WriteFile(spec, []byte("name: ddp\nimage: aixblock-test/ddp:latest\nresources: {gpus: 1, memory_mib: 128}\n"+
		"distributed: {nodes: 3}\nmax_price: \"20\"\nenv: {STEPS: \"100000\", STEP_DELAY_MS: \"10\"}\n"), 0o600)
	id := strings.TrimSpace(mustRun(t, req, "job", "submit", spec))
	waitState(t, req, id, func(s string) bool { return s == "running" })
	var list []struct {
		ID       string `json:"id"`
		Provider string `json:"provider"`
	}
	runJSON(t, req, &list, "job", "list")
	provs := map[string]bool{}
	for _, j := range list {
		provs[j.Provider] = true
	}
	if len(list) != 3 || len(provs) != 3 {
		t.Fatalf("%d rank jobs on %d providers, want 3 on 3 (all had room): %+v", len(list), len(provs), list)
	}
	// Kill the provider of a rank other than rank 0: every rank must fail.
	victim := -1
	for i := 0; i < 3 && victim < 0; i++ {
		var p idInfo
		runJSON(t, repos[i], &p, "id")
		for _, j := range list {
			if j.ID != id && j.Provider == p.PeerID {
				victim = i
			}
		}
	}
	t.Logf("ranks %+v; killing provider %d", list, victim)
	// The killed daemon's rank outlives it.
	t.Cleanup(func() {
		for _, j := range list {
			removeJobContainers(j.ID)
		}
	})
	daemons[victim].cmd.Process.Signal(syscall.SIGKILL)
	<-daemons[victim].done
	for _, j := range list {
		s := waitState(t, req, j.ID, terminal)
		if s.State != "failed" || !strings.Contains(s.Reason, "rank") && !strings.Contains(s.Reason, "unreachable") {
			t.Fatalf("rank job %s after its peer died: %s: %s", j.ID, s.State, s.Reason)
		}
		t.Logf("rank job %s: %s: %s", j.ID, s.State, s.Reason)
	}
}

// testnetUp starts `aixblock testnet up` in a directory of the test's and
// stops it at the end; it returns the directory.
func testnetUp(t testing.TB, args ...string) string {
	t.Helper()
	dir := t.TempDir()
	if out, err := exec.Command(bin, append([]string{"testnet", "up", "--dir", dir}, args...)...).CombinedOutput(); err != nil {
		t.Fatalf("testnet up: %v\n%s", err, out)
	}
	t.Cleanup(func() { exec.Command(bin, "testnet", "down", "--dir", dir).Run() })
	return dir
}

// hostProbes are addresses no rank may reach: each provider's API,
// gateway and libp2p TCP ports on loopback, and a listener on all of
// this host's addresses, by each non-loopback IPv4 address it has.
func hostProbes(t *testing.T, repos []string) []string {
	t.Helper()
	ln, err := net.Listen("tcp4", "0.0.0.0:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	port := strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
	var out []string
	addrs, _ := net.InterfaceAddrs()
	for _, a := range addrs {
		if ipn, ok := a.(*net.IPNet); ok && ipn.IP.To4() != nil && !ipn.IP.IsLoopback() {
			out = append(out, net.JoinHostPort(ipn.IP.String(), port))
		}
	}
	out = append(out, "127.0.0.1:"+port)
	for _, r := range repos {
		var id idInfo
		runJSON(t, r, &id, "id")
		if u, err := url.Parse(id.Gateway); err == nil && u.Host != "" {
			out = append(out, u.Host)
		}
		for _, a := range id.Addrs {
			if strings.HasPrefix(a, "/ip4/127.0.0.1/tcp/") {
				out = append(out, "127.0.0.1:"+strings.Split(a, "/")[4])
				break
			}
		}
		if b, err := os.ReadFile(filepath.Join(r, "api")); err == nil {
			out = append(out, strings.TrimPrefix(strings.TrimSpace(string(b)), "http://"))
		}
	}
	return out
}

// waitSettled waits until a requester, by its log, has delivered the last
// voucher for job id: it logs each voucher it sends with the ended jobs
// it settles, and signs none for a settled job after that. What a
// provider holds then is all it will get for the job.
func waitSettled(t testing.TB, log fmt.Stringer, id string) {
	t.Helper()
	settled := regexp.MustCompile(`msg="paid: voucher sent" .*job_id=` + regexp.QuoteMeta(id) + ` .*jobs_settled=[1-9]`)
	p2ptest.WaitFor(t, 20*time.Second, func() bool { return settled.MatchString(log.String()) },
		"the requester never settled job %s (no final voucher in its log)", id)
}

// logFile is a testnet daemon's log, read when it is printed.
type logFile string

func (f logFile) String() string {
	b, _ := os.ReadFile(string(f))
	return string(b)
}
