package overlay

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aixblock/aixblock/p2p"
	"github.com/aixblock/aixblock/p2p/p2ptest"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/peerstore"
	ma "github.com/multiformats/go-multiaddr"
)

// The like-for-like job network benchmark (make bench-ddp): two "hosts"
// (network namespaces joined by a veth, optionally shaped to a link
// rate), each running a daemon's libp2p host and job network in a helper
// process, and a rank namespace beside each. In one run it measures:
//
//   - a TCP copy between the two hosts over the veth, and between the two
//     ranks over the job network (whose libp2p connection crosses that
//     same veth, encrypted);
//   - the distributed test workload's all-reduce (2 ranks) between the
//     hosts directly, and between the ranks over the job network.
//
// For profiling: AIXBLOCK_BENCH_PROFILE=DIR has each helper write its CPU
// profile there (helper-0.prof is the receiving side of the copy), and
// AIXBLOCK_BENCH_SYSCALLS=1 counts the helpers' system calls during the
// overlay copy with perf stat (daemon-syscalls/MiB); the count slows the
// copy, so the ratio of such a run is not the figure.

var helperKeys = [2]byte{1, 2}

func helperKey(rank int) crypto.PrivKey {
	seed := bytes.Repeat([]byte{helperKeys[rank]}, ed25519.SeedSize)
	k, err := crypto.UnmarshalEd25519PrivateKey(ed25519.NewKeyFromSeed(seed))
	if err != nil {
		panic(err)
	}
	return k
}

func helperID(rank int) peer.ID {
	id, err := peer.IDFromPrivateKey(helperKey(rank))
	if err != nil {
		panic(err)
	}
	return id
}

// TestJobNetHelper is not a test: run by BenchmarkJobNetLink inside a host
// namespace, it is that host's daemon side of the job network until its
// stdin closes.
func TestJobNetHelper(t *testing.T) {
	dir := os.Getenv("AIXBLOCK_JOBNET_HELPER")
	if dir == "" {
		t.Skip("a helper of BenchmarkJobNetLink")
	}
	rank, _ := strconv.Atoi(os.Getenv("AIXBLOCK_JOBNET_RANK"))
	listen, _ := ma.NewMultiaddr(fmt.Sprintf("/ip4/10.99.0.%d/tcp/4001", rank+1))
	other, _ := ma.NewMultiaddr(fmt.Sprintf("/ip4/10.99.0.%d/tcp/4001", 2-rank))
	nd, err := p2p.New(context.Background(), p2p.Config{Network: testNet, NoNAT: true, DHTRefresh: -1, Identity: helperKey(rank), Listen: []ma.Multiaddr{listen}})
	if err != nil {
		t.Fatal(err)
	}
	defer nd.Close()
	nd.Host.Peerstore().AddAddr(helperID(1-rank), other, peerstore.PermanentAddrTTL)
	jn := NewJobNet(nd.Host, testNet, nil)
	defer jn.Close()
	r, err := jn.Join("bench", []peer.ID{helperID(0), helperID(1)}, rank, os.Getenv("AIXBLOCK_JOBNET_NS"))
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if rank == 1 { // connected before the copies start, so they measure carrying, not dialing
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := nd.Host.Connect(ctx, peer.AddrInfo{ID: helperID(0), Addrs: []ma.Multiaddr{other}}); err != nil {
			t.Fatal(err)
		}
	}
	os.WriteFile(filepath.Join(dir, fmt.Sprintf("ready-%d", rank)), nil, 0o644)
	io.Copy(io.Discard, os.Stdin)
}

func BenchmarkJobNetLink(b *testing.B) {
	for _, link := range []string{"", "10gbit", "1gbit"} {
		name := link
		if name == "" {
			name = "unshaped"
		}
		b.Run(name, func(b *testing.B) { benchLink(b, link) })
	}
}

func benchLink(b *testing.B, rate string) {
	hosts := []string{newNetns(b), newNetns(b)}
	ranks := []string{newNetns(b), newNetns(b)}
	veth := "aixl" + hosts[0][len(hosts[0])-6:]
	run := func(args ...string) {
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			b.Fatalf("ip %v: %v: %s", args, err, out)
		}
	}
	run("link", "add", veth+"a", "netns", hosts[0], "type", "veth", "peer", "name", veth+"b", "netns", hosts[1])
	for i, end := range []string{"a", "b"} {
		run("-n", hosts[i], "addr", "add", fmt.Sprintf("10.99.0.%d/24", i+1), "dev", veth+end)
		run("-n", hosts[i], "link", "set", veth+end, "up")
		if rate != "" {
			if out, err := exec.Command("ip", "netns", "exec", hosts[i], "tc", "qdisc", "add", "dev", veth+end, "root",
				"tbf", "rate", rate, "burst", "4mb", "latency", "50ms").CombinedOutput(); err != nil {
				b.Skipf("tc (iproute2) cannot shape the link here: %v: %s", err, out)
			}
		}
	}
	dir := b.TempDir()
	exe, _ := os.Executable()
	var pids []string
	for i := range hosts {
		args := []string{"netns", "exec", hosts[i], exe, "-test.run=^TestJobNetHelper$"}
		if prof := os.Getenv("AIXBLOCK_BENCH_PROFILE"); prof != "" {
			args = append(args, fmt.Sprintf("-test.cpuprofile=%s/helper-%d.prof", prof, i))
		}
		cmd := exec.Command("ip", args...)
		cmd.Env = append(os.Environ(), "AIXBLOCK_JOBNET_HELPER="+dir, "AIXBLOCK_JOBNET_RANK="+strconv.Itoa(i), "AIXBLOCK_JOBNET_NS=/run/netns/"+ranks[i])
		stdin, _ := cmd.StdinPipe()
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Start(); err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { stdin.Close(); cmd.Wait() })
		pids = append(pids, strconv.Itoa(cmd.Process.Pid)) // ip netns exec execs the helper
		p2ptest.WaitFor(b, 20*time.Second, func() bool {
			_, err := os.Stat(filepath.Join(dir, fmt.Sprintf("ready-%d", i)))
			return err == nil
		}, "helper %d not ready:\n%s", i, &out)
	}
	ddp := filepath.Join(b.TempDir(), "ddp")
	build := exec.Command("go", "build", "-o", ddp, "../../jobs/testdata/ddp")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		b.Fatalf("build the workload: %v\n%s", err, out)
	}
	ns := func(name string) string { return "/run/netns/" + name }
	const size = 512 << 20
	var tcp, over, arPlain, arOver float64
	for b.Loop() {
		tcp = copyRate(b, ns(hosts[0]), ns(hosts[1]), "10.99.0.1:7100", size)
		count := countSyscalls(b, pids)
		over = copyRate(b, ns(ranks[0]), ns(ranks[1]), "10.77.0.1:7100", size)
		if n := count(); n > 0 {
			b.ReportMetric(float64(n)/(size>>20), "daemon-syscalls/MiB")
		}
		arPlain = allReduce(b, ddp, hosts, "10.99.0.1")
		arOver = allReduce(b, ddp, ranks, "10.77.0.1")
	}
	b.ReportMetric(tcp, "tcp-MiB/s")
	b.ReportMetric(over, "overlay-MiB/s")
	b.ReportMetric(over/tcp, "overlay/tcp")
	b.ReportMetric(arPlain, "allreduce-tcp-MiB/s")
	b.ReportMetric(arOver, "allreduce-overlay-MiB/s")
	b.ReportMetric(arOver/arPlain, "allreduce-overlay/tcp")
}

// allReduce runs the workload's 2 ranks in namespaces nss meeting at
// master, and returns rank 0's all-reduce rate.
func allReduce(b *testing.B, bin string, nss []string, master string) float64 {
	var outs [2]bytes.Buffer
	var cmds [2]*exec.Cmd
	for r := range 2 {
		c := exec.Command("ip", "netns", "exec", nss[r], bin)
		c.Env = []string{"MASTER_ADDR=" + master, "MASTER_PORT=29500", "WORLD_SIZE=2", "RANK=" + strconv.Itoa(r),
			"STEPS=30", fmt.Sprintf("PAD=%d", 2<<20), "OUTPUT_DIR=" + b.TempDir()}
		c.Stdout, c.Stderr = &outs[r], &outs[r]
		if err := c.Start(); err != nil {
			b.Fatal(err)
		}
		cmds[r] = c
	}
	for r, c := range cmds {
		if err := c.Wait(); err != nil {
			b.Fatalf("rank %d: %v\n%s", r, err, outs[r].String())
		}
	}
	for _, l := range strings.Split(outs[0].String(), "\n") {
		if s, ok := strings.CutPrefix(l, "final "); ok {
			var m struct {
				MiB float64 `json:"allreduce_mib_per_s"`
			}
			json.Unmarshal([]byte(s), &m)
			if m.MiB > 0 {
				return m.MiB
			}
		}
	}
	b.Fatalf("no all-reduce rate:\n%s", outs[0].String())
	return 0
}

// countSyscalls starts counting the system calls of processes pids and
// their threads when AIXBLOCK_BENCH_SYSCALLS is set and perf is there;
// the function it returns stops and reports the count (0 without one).
func countSyscalls(b *testing.B, pids []string) func() int {
	none := func() int { return 0 }
	if os.Getenv("AIXBLOCK_BENCH_SYSCALLS") == "" {
		return none
	}
	if _, err := exec.LookPath("perf"); err != nil {
		b.Logf("no syscall count: %v", err)
		return none
	}
	var out bytes.Buffer
	cmd := exec.Command("perf", "stat", "-x,", "-e", "raw_syscalls:sys_enter", "--pid", strings.Join(pids, ","))
	cmd.Stderr = &out
	if err := cmd.Start(); err != nil {
		b.Logf("no syscall count: %v", err)
		return none
	}
	return func() int {
		cmd.Process.Signal(os.Interrupt)
		cmd.Wait()
		n, err := strconv.Atoi(strings.SplitN(out.String(), ",", 2)[0])
		if err != nil {
			b.Logf("no syscall count in %q", out.String())
		}
		return n
	}
}
