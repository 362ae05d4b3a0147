package main

import (
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/aixblock/aixblock/p2p/p2ptest"
)

// A market job outlives a SIGKILL of either side: the requester's daemon,
// started again, follows and pays the job it ran before; the provider's,
// started again on another port, watches the container it left running,
// and the requester finds it again through the DHT. Both jobs complete
// with their results, and the requester pays what it saw run, plus at
// most one voucher interval.
func TestRestartsMidJob(t *testing.T) {
	jobDocker(t)
	r := startRestartNet(t)
	waitProviders(t, r.req(), 1)
	for _, c := range []struct {
		name   string
		killed int
	}{{"requester-killed", 2}, {"provider-killed", 1}} {
		t.Run(c.name, func(t *testing.T) {
			id := r.runKilling(t, c.name, c.killed)
			paid := r.paidWhatItSaw(t, id)
			r.voucherHeld(t)
			t.Logf("%s: %s", c.name, paid)
		})
	}
}

// restartNet is TestRestartsMidJob's dev chain and daemons: a bootstrap
// node, a provider and a requester, each of which it can kill and start
// again.
type restartNet struct {
	t       *testing.T // the whole test's: daemons started again outlive a subtest
	repos   []string
	daemons []*daemon
	extra   [][]string // each daemon's flags
}

// restartInterval is a wide voucher interval: the provider stops a job
// whose vouchers fall two intervals behind, and a daemon takes a second
// or two to start.
const restartInterval = 3 * time.Second

func startRestartNet(t *testing.T) *restartNet {
	info, file := startDevchain(t)
	flags := []string{"--voucher-interval", restartInterval.String()}
	net := startChainNet(t, "e2erestart", info, file,
		chainNode{flags: flags},
		chainNode{init: []string{"--gpu-mock", "dgxh100", "--price", "mock-h100-80gb=36"}, flags: flags},
		chainNode{flags: flags})
	return &restartNet{t: t, repos: net.repos, daemons: net.daemons, extra: net.flags}
}

func (r *restartNet) prov() string { return r.repos[1] }
func (r *restartNet) req() string  { return r.repos[2] }

// kill SIGKILLs daemon i and starts it again.
func (r *restartNet) kill(i int) {
	r.t.Helper()
	r.daemons[i].cmd.Process.Signal(syscall.SIGKILL)
	<-r.daemons[i].done
	os.Remove(filepath.Join(r.repos[i], "api")) // stale: startDaemon waits for the new one
	r.daemons[i] = startDaemon(r.t, r.repos[i], r.extra[i]...)
}

// runKilling runs a job named name, kills daemon killed once the job is
// paid for, and checks that the job completes with its results. It
// returns the job's ID.
func (r *restartNet) runKilling(t *testing.T, name string, killed int) string {
	req := r.req()
	spec := filepath.Join(t.TempDir(), name+".yaml")
	os.WriteFile(spec, []byte("name: "+name+"\nimage: "+jobImage+"\nargs: [sleepwrite, 10s, /outputs/done.txt, "+name+"]\n"+
		"resources: {gpus: 1, gpu_class: mock-h100-80gb, memory_mib: 64}\nmax_price: \"50\"\n"), 0o600)
	id := strings.TrimSpace(mustRun(t, req, "job", "submit", spec))
	waitState(t, req, id, func(s string) bool { return s == "running" })
	// A voucher paid before the kill.
	p2ptest.WaitFor(t, 10*time.Second, func() bool {
		var st struct {
			Cost struct{ Paid string } `json:"cost"`
		}
		runJSON(t, req, &st, "job", "status", id)
		return st.Cost.Paid != "" && st.Cost.Paid != "0"
	}, "job %s running and not paid for", id)
	r.kill(killed)
	s := waitState(t, req, id, terminal)
	if s.State != "completed" {
		t.Fatalf("after the %s's SIGKILL and restart the job ended %s: %s", strings.TrimSuffix(name, "-killed"), s.State, s.Reason)
	}
	out := filepath.Join(t.TempDir(), "results")
	mustRun(t, req, "job", "results", id, "-o", out)
	if b, err := os.ReadFile(filepath.Join(out, "done.txt")); err != nil || string(b) != name {
		t.Fatalf("results: %q, %v", b, err)
	}
	return id
}

// paidWhatItSaw: the requester paid for the time it saw, within an
// interval. It returns the run's figures, for the log.
func (r *restartNet) paidWhatItSaw(t *testing.T, id string) string {
	const interval = restartInterval
	var st struct {
		Cost struct {
			Cost, Paid string
			Ranks      []struct{ Price string }
		} `json:"cost"`
	}
	runJSON(t, r.req(), &st, "job", "status", id)
	var ran struct {
		StartedAt  time.Time `json:"started_at"`
		FinishedAt time.Time `json:"finished_at"`
	}
	runJSON(t, r.prov(), &ran, "job", "status", id)
	cost, _ := new(big.Int).SetString(st.Cost.Cost, 10)
	paid, _ := new(big.Int).SetString(st.Cost.Paid, 10)
	price, _ := new(big.Int).SetString(st.Cost.Ranks[0].Price, 10)
	per := func(d time.Duration) *big.Int { // price × d, per GPU-hour
		return new(big.Int).Div(new(big.Int).Mul(price, big.NewInt(d.Milliseconds())), big.NewInt(3600*1000))
	}
	actual := ran.FinishedAt.Sub(ran.StartedAt)
	if cost == nil || paid == nil || cost.Sign() == 0 || paid.Cmp(cost) < 0 || paid.Cmp(new(big.Int).Add(cost, per(interval+time.Second))) > 0 {
		t.Fatalf("cost %s, paid %s: want paid within one interval (%s) above the cost", st.Cost.Cost, st.Cost.Paid, per(interval))
	}
	// What the requester saw: from its first sight of the job running
	// to its first sight of it ended, about the run on the provider.
	if lo, hi := per(actual-2*interval), per(actual+3*interval); cost.Cmp(lo) < 0 || cost.Cmp(hi) > 0 {
		t.Fatalf("cost %s for a run of %s on the provider: want between %s and %s", cost, actual, lo, hi)
	}
	return fmt.Sprintf("ran %s on the provider, cost %s, paid %s (price %s per GPU-hour)", actual.Round(time.Millisecond), cost, paid, fmt.Sprint(price))
}

// voucherHeld: the provider holds exactly the requester's last voucher.
func (r *restartNet) voucherHeld(t *testing.T) {
	var chs channelsOut
	p2ptest.WaitFor(t, 20*time.Second, func() bool {
		runJSON(t, r.prov(), &chs, "wallet", "channels")
		if len(chs.Channels) != 1 || chs.Channels[0].Vouched == "" {
			return false
		}
		held, _ := new(big.Int).SetString(chs.Channels[0].Vouched, 10)
		var all channelsOut
		runJSON(t, r.req(), &all, "wallet", "channels")
		return held != nil && len(all.Channels) == 1 && all.Channels[0].Vouched == chs.Channels[0].Vouched
	}, "the provider's voucher never matched the requester's: %+v", &chs)
}
