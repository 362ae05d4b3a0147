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
	info, file := startDevchain(t)
	// A wide voucher interval: the provider stops a job whose vouchers fall
	// two intervals behind, and a daemon takes a second or two to start.
	const interval = 3 * time.Second
	repos := make([]string, 3) // bootstrap node, provider, requester
	daemons := make([]*daemon, 3)
	extra := make([][]string, 3)
	var boot string
	for i := range repos {
		key := filepath.Join(t.TempDir(), "key")
		os.WriteFile(key, []byte(info.Accounts[i+1].PrivateKey), 0o600)
		repos[i] = filepath.Join(t.TempDir(), "repo")
		args := []string{"init", "--network", "e2erestart", "--devchain", file, "--wallet-key", key}
		if i == 1 {
			args = append(args, "--gpu-mock", "dgxh100", "--price", "nvidia-h100-80gb=36")
		}
		mustRun(t, repos[i], args...)
		extra[i] = []string{"--voucher-interval", interval.String()}
		if boot != "" {
			extra[i] = append(extra[i], "--bootstrap", boot)
		}
		daemons[i] = startDaemon(t, repos[i], extra[i]...)
		if i == 0 {
			var id idInfo
			runJSON(t, repos[0], &id, "id")
			boot = id.Addrs[0]
		}
	}
	prov, req := repos[1], repos[2]
	waitProviders(t, req, 1)
	kill := func(i int) {
		t.Helper()
		daemons[i].cmd.Process.Signal(syscall.SIGKILL)
		<-daemons[i].done
		os.Remove(filepath.Join(repos[i], "api")) // stale: startDaemon waits for the new one
		daemons[i] = startDaemon(t, repos[i], extra[i]...)
	}
	spec := func(name string) string {
		p := filepath.Join(t.TempDir(), name+".yaml")
		os.WriteFile(p, []byte("name: "+name+"\nimage: "+jobImage+"\nargs: [sleepwrite, 10s, /outputs/done.txt, "+name+"]\n"+
			"resources: {gpus: 1, gpu_class: nvidia-h100-80gb, memory_mib: 64}\nmax_price: \"50\"\n"), 0o600)
		return p
	}

	for _, c := range []struct {
		name   string
		killed int
	}{{"requester-killed", 2}, {"provider-killed", 1}} {
		t.Run(c.name, func(t *testing.T) {
			id := strings.TrimSpace(mustRun(t, req, "job", "submit", spec(c.name)))
			waitState(t, req, id, func(s string) bool { return s == "running" })
			// A voucher paid before the kill.
			p2ptest.WaitFor(t, 10*time.Second, func() bool {
				var st struct {
					Cost struct{ Paid string } `json:"cost"`
				}
				runJSON(t, req, &st, "job", "status", id)
				return st.Cost.Paid != "" && st.Cost.Paid != "0"
			}, "job %s running and not paid for", id)
			kill(c.killed)
			s := waitState(t, req, id, terminal)
			if s.State != "completed" {
				t.Fatalf("after the %s's SIGKILL and restart the job ended %s: %s", strings.TrimSuffix(c.name, "-killed"), s.State, s.Reason)
			}
			out := filepath.Join(t.TempDir(), "results")
			mustRun(t, req, "job", "results", id, "-o", out)
			if b, err := os.ReadFile(filepath.Join(out, "done.txt")); err != nil || string(b) != c.name {
				t.Fatalf("results: %q, %v", b, err)
			}

			// The money: the requester paid for the time it saw, within an
			// interval, and the provider holds exactly that voucher.
			var st struct {
				Cost struct {
					Cost, Paid string
					Ranks      []struct{ Price string }
				} `json:"cost"`
			}
			runJSON(t, req, &st, "job", "status", id)
			var ran struct {
				StartedAt  time.Time `json:"started_at"`
				FinishedAt time.Time `json:"finished_at"`
			}
			runJSON(t, prov, &ran, "job", "status", id)
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
			var chs channelsOut
			p2ptest.WaitFor(t, 20*time.Second, func() bool {
				runJSON(t, prov, &chs, "wallet", "channels")
				if len(chs.Channels) != 1 || chs.Channels[0].Vouched == "" {
					return false
				}
				held, _ := new(big.Int).SetString(chs.Channels[0].Vouched, 10)
				var all channelsOut
				runJSON(t, req, &all, "wallet", "channels")
				return held != nil && len(all.Channels) == 1 && all.Channels[0].Vouched == chs.Channels[0].Vouched
			}, "the provider's voucher never matched the requester's: %+v", &chs)
			t.Logf("%s: ran %s on the provider, cost %s, paid %s (price %s per GPU-hour)", c.name, actual.Round(time.Millisecond), cost, paid, fmt.Sprint(price))
		})
	}
}
