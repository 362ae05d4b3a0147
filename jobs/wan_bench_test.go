package jobs

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"text/tabwriter"
	"time"
)

// The WAN training benchmark (make bench-wan): plain DDP against DiLoCo
// (fp16 and int8) on the same task, two ranks in network namespaces
// joined by one shaped link, 25 ms each way (50 ms round trip) and 100
// Mbit/s each way:
//
//	rank 0 ns: eth0 10.88.0.1 ═══ eth0 10.88.0.2: rank 1 ns
//
// The link is a veth with tc netem on both ends; where the kernel lacks
// sch_netem, a delay line in this process does netem's delay and rate
// between two TUN devices (wan_delay_test.go). The ranks are processes
// started as a provider starts a rank: the launcher contract from
// Rendezvous.Env, gloo on the rank's one interface. There is no NAT on
// the path: on the market the job network carries the ranks' traffic
// across NATs; here the link alone is measured.

// The link, each way.
const (
	wanDelay = 25 * time.Millisecond
	wanRate  = 100e6 // bits per second
)

type wanNet struct {
	prefix string
	names  []string
	shaper string // "tc netem" or "delay line"
}

func (n *wanNet) ns(host string) string { return n.prefix + host }

func (n *wanNet) run(tb testing.TB, host string, args ...string) string {
	tb.Helper()
	full := append([]string{"netns", "exec", n.ns(host)}, args...)
	out, err := exec.Command("ip", full...).CombinedOutput()
	if err != nil {
		tb.Fatalf("%s in %s: %v: %s", strings.Join(args, " "), host, err, out)
	}
	return string(out)
}

// newWANNet makes the two namespaces and the link, removed at cleanup
// (a veth goes with its namespaces, the delay line's TUNs with their
// files).
func newWANNet(tb testing.TB) *wanNet {
	tb.Helper()
	if os.Geteuid() != 0 {
		skipWAN(tb, "network namespaces need root")
	}
	for _, c := range []string{"ip", "tc"} {
		if _, err := exec.LookPath(c); err != nil {
			skipWAN(tb, "no "+c+" (iproute2)")
		}
	}
	var b [3]byte
	rand.Read(b[:])
	n := &wanNet{prefix: "aixwan" + hex.EncodeToString(b[:]) + "-"}
	tb.Cleanup(func() {
		for _, name := range n.names {
			exec.Command("ip", "netns", "delete", name).Run()
		}
	})
	for _, h := range []string{"r0", "r1"} {
		if out, err := exec.Command("ip", "netns", "add", n.ns(h)).CombinedOutput(); err != nil {
			tb.Fatalf("ip netns add: %v: %s", err, out)
		}
		n.names = append(n.names, n.ns(h))
		n.run(tb, h, "ip", "link", "set", "lo", "up")
	}
	if n.netemLink(tb) {
		n.shaper = "tc netem"
	} else {
		newDelayLine(tb, [2]string{"/run/netns/" + n.ns("r0"), "/run/netns/" + n.ns("r1")}, wanDelay, wanRate)
		n.shaper = "delay line (no sch_netem in this kernel)"
	}
	return n
}

// netemLink joins the ranks with a veth shaped by tc netem on both ends;
// false, with nothing left behind, where the kernel has no netem.
func (n *wanNet) netemLink(tb testing.TB) bool {
	tb.Helper()
	if out, err := exec.Command("ip", "link", "add", "eth0", "netns", n.ns("r0"), "type", "veth",
		"peer", "name", "eth0", "netns", n.ns("r1")).CombinedOutput(); err != nil {
		tb.Fatalf("veth: %v: %s", err, out)
	}
	for i, h := range []string{"r0", "r1"} {
		n.run(tb, h, "ip", "addr", "add", fmt.Sprintf("10.88.0.%d/24", i+1), "dev", "eth0")
		n.run(tb, h, "ip", "link", "set", "eth0", "up")
		// The queue holds well over a bandwidth-delay product, so netem
		// delays and paces but does not drop.
		out, err := exec.Command("ip", "netns", "exec", n.ns(h), "tc", "qdisc", "add", "dev", "eth0", "root", "netem",
			"delay", wanDelay.String(), "rate", fmt.Sprintf("%.0fbit", wanRate), "limit", "100000").CombinedOutput()
		if err != nil {
			tb.Logf("tc netem: %v: %s", err, bytes.TrimSpace(out))
			n.run(tb, "r0", "ip", "link", "delete", "eth0")
			return false
		}
	}
	return true
}

func skipWAN(tb testing.TB, why string) {
	tb.Helper()
	if os.Getenv("AIXBLOCK_REQUIRE_NETNS") != "" {
		tb.Fatal(why)
	}
	tb.Skip(why)
}

// txBytes is what rank i's interface has sent so far.
func (n *wanNet) txBytes(tb testing.TB, i int) int64 {
	tb.Helper()
	// ip netns exec mounts the namespace's own /sys.
	s := strings.TrimSpace(n.run(tb, fmt.Sprintf("r%d", i), "cat", "/sys/class/net/eth0/statistics/tx_bytes"))
	v, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		tb.Fatalf("tx_bytes %q: %v", s, err)
	}
	return v
}

// rtt is the measured round trip from rank 0 to rank 1; zero without
// ping (iputils-ping).
func (n *wanNet) rtt(tb testing.TB) time.Duration {
	tb.Helper()
	if _, err := exec.LookPath("ping"); err != nil {
		return 0
	}
	out := n.run(tb, "r0", "ping", "-c", "3", "-i", "0.2", "-q", "10.88.0.2")
	m := regexp.MustCompile(`= [0-9.]+/([0-9.]+)/`).FindStringSubmatch(out)
	if m == nil {
		tb.Fatalf("ping: %s", out)
	}
	ms, _ := strconv.ParseFloat(m[1], 64)
	return time.Duration(ms * float64(time.Millisecond))
}

// wanFinal is a rank's "final" line (task.py's finish).
type wanFinal struct {
	Rank       int     `json:"rank"`
	Steps      int     `json:"steps"`
	Samples    int     `json:"samples"`
	Params     int     `json:"params"`
	Wall       float64 `json:"wall_s"`
	StepS      float64 `json:"step_s"`
	Compute    float64 `json:"compute_s"`
	Util       float64 `json:"util"`
	EvalLoss   float64 `json:"eval_loss"`
	StartLoss  float64 `json:"start_eval_loss"`
	RanksEqual bool    `json:"ranks_equal"`
}

// wanRanks runs script as both ranks, with the provider's launcher
// contract and env, and returns each rank's final line and the bytes
// both ranks sent while it ran.
func wanRanks(tb testing.TB, n *wanNet, py, script string, env []string) ([2]wanFinal, int64) {
	tb.Helper()
	dir, _ := filepath.Abs(dilocoDir)
	before := n.txBytes(tb, 0) + n.txBytes(tb, 1)
	var outs [2]bytes.Buffer
	var cmds [2]*exec.Cmd
	for r := range 2 {
		rv := Rendezvous{Nodes: 2, NodeRank: r, MasterAddr: "10.88.0.1", MasterPort: 29500, Framework: "pytorch"}
		c := exec.Command("ip", "netns", "exec", n.ns(fmt.Sprintf("r%d", r)), py, filepath.Join(dir, script))
		c.Env = pythonEnv(append(append(rv.Env(), "GLOO_SOCKET_IFNAME=eth0", "OUTPUT_DIR="+tb.TempDir()), env...)...)
		c.Stdout, c.Stderr = &outs[r], &outs[r]
		if err := c.Start(); err != nil {
			tb.Fatal(err)
		}
		cmds[r] = c
	}
	for r, c := range cmds {
		if err := c.Wait(); err != nil {
			tb.Fatalf("%s rank %d: %v\n%s", script, r, err, outs[r].String())
		}
	}
	var finals [2]wanFinal
	for r := range finals {
		finals[r] = finalLine(tb, outs[r].String())
	}
	return finals, n.txBytes(tb, 0) + n.txBytes(tb, 1) - before
}

func finalLine(tb testing.TB, out string) wanFinal {
	tb.Helper()
	for _, l := range strings.Split(out, "\n") {
		if s, ok := strings.CutPrefix(l, "final "); ok {
			var f wanFinal
			if err := json.Unmarshal([]byte(s), &f); err != nil {
				tb.Fatalf("%q: %v", l, err)
			}
			return f
		}
	}
	tb.Fatalf("no final line:\n%s", out)
	return wanFinal{}
}

// wanResult is one configuration's figures, rank 0's timings.
type wanResult struct {
	name        string
	stepMs      float64
	waitMs      float64 // per step, the wall time not spent computing: the link's cost
	sentPerStep float64 // bytes, per rank
	util        float64
	startLoss   float64
	evalLoss    float64
	samples     int
}

// wanConfig runs a configuration twice: with no steps (the setup's bytes:
// rendezvous, gloo's connections, the final check) and with steps; the
// difference is what training sent.
func wanConfig(b *testing.B, n *wanNet, py, name, script string, env []string) wanResult {
	_, setup := wanRanks(b, n, py, script, append(env, "STEPS=0"))
	finals, total := wanRanks(b, n, py, script, env)
	f := finals[0]
	if !finals[0].RanksEqual || !(f.EvalLoss < f.StartLoss) {
		b.Fatalf("%s: ranks equal %v, held-out loss %g -> %g", name, f.RanksEqual, f.StartLoss, f.EvalLoss)
	}
	return wanResult{name: name, stepMs: f.StepS * 1000, waitMs: (f.Wall - f.Compute) / float64(f.Steps) * 1000,
		sentPerStep: float64(total-setup) / 2 / float64(f.Steps),
		util:        f.Util, startLoss: f.StartLoss, evalLoss: f.EvalLoss, samples: f.Samples}
}

// BenchmarkWAN: time per step, bytes sent per step, compute utilisation
// and the held-out loss after the same samples, for DDP and DiLoCo in 16
// and 8 bits on the same shaped links. AIXBLOCK_WAN_STEPS sets the inner
// steps per rank (300).
func BenchmarkWAN(b *testing.B) {
	py := torchPython(b)
	n := newWANNet(b)
	rtt := n.rtt(b)
	steps := orDefault(os.Getenv("AIXBLOCK_WAN_STEPS"), "300")
	configs := []struct{ name, script, bits string }{
		{"ddp", "ddp.py", ""}, {"diloco-fp16", "diloco.py", "16"}, {"diloco-int8", "diloco.py", "8"},
	}
	var results []wanResult
	for _, c := range configs {
		b.Run(c.name, func(b *testing.B) {
			var r wanResult
			for b.Loop() {
				r = wanConfig(b, n, py, c.name, c.script, []string{"STEPS=" + steps, "BITS=" + c.bits})
			}
			b.ReportMetric(r.stepMs, "ms/step")
			b.ReportMetric(r.waitMs, "wait-ms/step")
			b.ReportMetric(r.sentPerStep/1e3, "sent-kB/step")
			b.ReportMetric(100*r.util, "util-%")
			b.ReportMetric(r.evalLoss, "loss")
			results = append(results, r)
		})
	}
	ping := "no ping (iputils-ping) to measure the round trip"
	if rtt > 0 {
		ping = fmt.Sprintf("ping %.1f ms", float64(rtt)/1e6)
	}
	b.Logf("link: %s and %.0f Mbit/s each way, by %s; %s\n%s", wanDelay, wanRate/1e6, n.shaper, ping, wanTable(results))
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

func wanTable(results []wanResult) string {
	var sb strings.Builder
	w := tabwriter.NewWriter(&sb, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(w, "config\tms/step\tnot computing ms/step\tkB sent/step/rank\tcompute util\theld-out loss\tsamples\t")
	for _, r := range results {
		fmt.Fprintf(w, "%s\t%.1f\t%.1f\t%.1f\t%.1f%%\t%.4f -> %.4f\t%d\t\n",
			r.name, r.stepMs, r.waitMs, r.sentPerStep/1e3, 100*r.util, r.startLoss, r.evalLoss, r.samples)
	}
	w.Flush()
	return sb.String()
}
