package main

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aixblock/aixblock/p2p/p2ptest"
)

// The NAT topology, all in network namespaces this test makes:
//
//	          inet (a bridge: the "internet", 11.11.0.0/24)
//	  ┌────────────┬──────────┴──┬──────────────┐
//	 pub .2       req .3      r1 .11          r2 .12   (home routers:
//	(bootstrap,  (requester)     │ NAT           │ NAT   MASQUERADE)
//	 job relay,               p1 192.168.1.2   p2 192.168.2.2
//	 dev chain)               (provider)       (provider)
//
// Daemons run inside the namespaces (ip netns exec); Docker stays the
// host's engine, so a rank's holder container has its own namespace,
// where the provider's daemon puts the job network's device. The routers
// drop what comes in unasked, as home routers do: the providers cannot
// dial each other, only punch holes or go through pub. With symmetric
// NAT (MASQUERADE --random-fully: a new port for every destination) hole
// punching cannot work and the ranks' traffic is relayed.
type natNet struct {
	prefix string
	names  []string
}

func (n *natNet) ns(host string) string { return n.prefix + host }

func (n *natNet) ip(t *testing.T, host string, args ...string) {
	t.Helper()
	full := args
	if host != "" {
		full = append([]string{"-n", n.ns(host)}, args...)
	}
	if out, err := exec.Command("ip", full...).CombinedOutput(); err != nil {
		t.Fatalf("ip %s: %v: %s", strings.Join(full, " "), err, out)
	}
}

func (n *natNet) exec(t *testing.T, host string, args ...string) {
	t.Helper()
	full := append([]string{"netns", "exec", n.ns(host)}, args...)
	if out, err := exec.Command("ip", full...).CombinedOutput(); err != nil {
		t.Fatalf("%s: %v: %s", strings.Join(args, " "), err, out)
	}
}

func newNATNet(t *testing.T, symmetric bool) *natNet {
	t.Helper()
	if os.Geteuid() != 0 {
		p2ptest.SkipNetns(t, "network namespaces need root")
	}
	for _, c := range []string{"ip", "iptables"} {
		if _, err := exec.LookPath(c); err != nil {
			p2ptest.SkipNetns(t, "no "+c+" (.ci/run installs iproute2 and iptables)")
		}
	}
	var b [3]byte
	rand.Read(b[:])
	n := &natNet{prefix: "aixnat" + hex.EncodeToString(b[:]) + "-"}
	t.Cleanup(func() {
		for _, name := range n.names {
			exec.Command("ip", "netns", "delete", name).Run()
		}
	})
	for _, h := range []string{"inet", "pub", "req", "r1", "r2", "p1", "p2"} {
		name := n.ns(h)
		if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
			t.Fatalf("ip netns add %s: %v: %s", name, err, out)
		}
		n.names = append(n.names, name)
		n.ip(t, h, "link", "set", "lo", "up")
	}
	n.ip(t, "inet", "link", "add", "br0", "type", "bridge")
	n.ip(t, "inet", "link", "set", "br0", "up")
	for h, addr := range map[string]string{"pub": "11.11.0.2", "req": "11.11.0.3", "r1": "11.11.0.11", "r2": "11.11.0.12"} {
		n.ip(t, "", "link", "add", "v"+h, "netns", n.ns("inet"), "type", "veth", "peer", "name", "eth0", "netns", n.ns(h))
		n.ip(t, "inet", "link", "set", "v"+h, "master", "br0", "up")
		n.ip(t, h, "addr", "add", addr+"/24", "dev", "eth0")
		n.ip(t, h, "link", "set", "eth0", "up")
	}
	for i, h := range []string{"p1", "p2"} {
		r := fmt.Sprintf("r%d", i+1)
		lan := fmt.Sprintf("192.168.%d", i+1)
		n.ip(t, "", "link", "add", "lan", "netns", n.ns(r), "type", "veth", "peer", "name", "eth0", "netns", n.ns(h))
		n.ip(t, r, "addr", "add", lan+".1/24", "dev", "lan")
		n.ip(t, r, "link", "set", "lan", "up")
		n.ip(t, h, "addr", "add", lan+".2/24", "dev", "eth0")
		n.ip(t, h, "link", "set", "eth0", "up")
		n.ip(t, h, "route", "add", "default", "via", lan+".1")
		n.exec(t, r, "sysctl", "-qw", "net.ipv4.ip_forward=1")
		masq := []string{"iptables", "-t", "nat", "-A", "POSTROUTING", "-o", "eth0", "-j", "MASQUERADE"}
		if symmetric {
			masq = append(masq, "--random-fully")
		}
		n.exec(t, r, masq...)
		n.exec(t, r, "iptables", "-A", "FORWARD", "-i", "eth0", "-o", "lan", "-m", "conntrack", "--ctstate", "ESTABLISHED,RELATED", "-j", "ACCEPT")
		n.exec(t, r, "iptables", "-A", "FORWARD", "-i", "eth0", "-o", "lan", "-j", "DROP")
		// Nor does the router answer for itself (a refusal would end a
		// hole punch's first SYN before the other side's opens the way).
		n.exec(t, r, "iptables", "-A", "INPUT", "-i", "eth0", "-m", "conntrack", "--ctstate", "ESTABLISHED,RELATED", "-j", "ACCEPT")
		n.exec(t, r, "iptables", "-A", "INPUT", "-i", "eth0", "-j", "DROP")
	}
	return n
}

// natNode is a daemon of the topology: its repo is placed in its host's
// namespace, so every CLI call on it runs there too.
func (n *natNet) node(t *testing.T, host, devchain, key string, provider bool, config func(map[string]any)) string {
	t.Helper()
	repo := filepath.Join(t.TempDir(), "repo")
	repoNetns.Store(repo, n.ns(host))
	t.Cleanup(func() { repoNetns.Delete(repo) })
	args := []string{"init", "--network", "e2enat", "--devchain", devchain, "--wallet-key", key}
	if provider {
		args = append(args, "--gpu-mock", "dgxh100", "--price", "*=10")
	}
	mustRun(t, repo, args...)
	setConfig(t, repo, func(c map[string]any) {
		c["listen"] = []string{"/ip4/0.0.0.0/tcp/4001", "/ip4/0.0.0.0/udp/4001/quic-v1"}
		c["mdns"] = false
		c["nat"] = true
		config(c)
	})
	return repo
}

// TestJobAcrossNATs runs a 2-node job whose ranks sit behind two home
// routers' NATs: through a hole-punched direct path, then (symmetric NAT)
// through the public node's job relay. Each asserts the path the rank
// traffic took, from the providers' view of the job network.
func TestJobAcrossNATs(t *testing.T) {
	for _, c := range []natCase{
		{"hole punched", false, "direct"},
		{"relayed", true, "relayed"},
	} {
		t.Run(c.name, func(t *testing.T) { testJobAcrossNATs(t, c) })
	}
}

// natCase is a NAT of the home routers, and the path the ranks' traffic
// must take through it.
type natCase struct {
	name      string
	symmetric bool
	want      string
}

func testJobAcrossNATs(t *testing.T, c natCase) {
	ddpImage(t)
	n := newNATNet(t, c.symmetric)
	req, provDaemons := n.startNodes(t)
	defer logProvidersIfFailed(t, provDaemons)
	waitProviders(t, req, 2)
	if c.symmetric {
		relayDenied(t, req)
	}
	spec := filepath.Join(t.TempDir(), "ddp.yaml")
	os.WriteFile(spec, []byte("name: nat\nimage: aixblock-test/ddp:latest\nresources: {gpus: 1, memory_mib: 128}\n"+
		"distributed: {nodes: 2}\nmax_price: \"20\"\nenv: {STEPS: \"400\", STEP_DELAY_MS: \"10\"}\n"), 0o600)
	id := strings.TrimSpace(mustRun(t, req, "job", "submit", spec))
	seen := waitRankPaths(t, req, id, c.want)
	s := waitState(t, req, id, terminal)
	if s.State != "completed" {
		t.Fatalf("job across NATs: %+v\n%s", s, mustRun(t, req, "job", "logs", id))
	}
	if logs := mustRun(t, req, "job", "logs", id); strings.Count(logs, "master 10.77.0.1:29500") != 2 || strings.Count(logs, "final ") != 2 {
		t.Fatalf("the ranks did not meet at rank 0's overlay address:\n%s", logs)
	}
	t.Logf("paths %v", seen)
}

// startNodes starts the topology's daemons on a dev chain in pub: the
// public node, the requester and the two providers behind their routers.
// It returns the requester's repo and the providers' daemons.
func (n *natNet) startNodes(t *testing.T) (string, []*daemon) {
	t.Helper()
	info, chainFile := startDevchainIn(t, n.ns("pub"), "11.11.0.2")
	keyFile := func(i int) string {
		p := filepath.Join(t.TempDir(), "key")
		os.WriteFile(p, []byte(info.Accounts[i].PrivateKey), 0o600)
		return p
	}
	pub := n.node(t, "pub", chainFile, keyFile(1), false, func(c map[string]any) {
		c["reachability"] = "public"
		c["job_relay"] = true
	})
	startDaemonArgs(t, pub)
	var pubID idInfo
	runJSON(t, pub, &pubID, "id")
	boot := "/ip4/11.11.0.2/tcp/4001/p2p/" + pubID.PeerID
	req := n.node(t, "req", chainFile, keyFile(2), false, func(c map[string]any) {
		c["reachability"] = "public"
		c["bootstrap"] = []string{boot}
	})
	var provs []string
	for i, h := range []string{"p1", "p2"} {
		p := n.node(t, h, chainFile, keyFile(3+i), true, func(c map[string]any) {
			c["reachability"] = "private"
			c["relays"] = []string{boot}
			c["bootstrap"] = []string{boot}
		})
		provs = append(provs, p)
	}
	startDaemonArgs(t, req, "--voucher-interval", "500ms")
	var provDaemons []*daemon
	for _, p := range provs {
		provDaemons = append(provDaemons, startDaemonArgs(t, p))
	}
	return req, provDaemons
}

// logProvidersIfFailed shows the end of each provider's log in a failed
// test (and keeps the logs whole under $AIXBLOCK_TEST_LOGS).
func logProvidersIfFailed(t *testing.T, provDaemons []*daemon) {
	if !t.Failed() {
		return
	}
	for i, d := range provDaemons {
		if dir := os.Getenv("AIXBLOCK_TEST_LOGS"); dir != "" {
			os.WriteFile(filepath.Join(dir, fmt.Sprintf("nat-p%d.log", i+1)), d.stderr.Bytes(), 0o644)
		}
		lines := strings.Split(d.stderr.String(), "\n")
		t.Logf("provider %d's log (last lines):\n%s", i+1, strings.Join(lines[max(0, len(lines)-40):], "\n"))
	}
}

// relayDenied: behind symmetric NATs, a job that denies relays is refused
// before any rank starts, saying why.
func relayDenied(t *testing.T, req string) {
	t.Helper()
	deny := filepath.Join(t.TempDir(), "deny.yaml")
	os.WriteFile(deny, []byte("name: nat-deny\nimage: aixblock-test/ddp:latest\nresources: {gpus: 1, memory_mib: 128}\n"+
		"distributed: {nodes: 2, relay: deny}\nmax_price: \"20\"\n"), 0o600)
	id := strings.TrimSpace(mustRun(t, req, "job", "submit", deny))
	s := waitState(t, req, id, terminal)
	if s.State != "failed" || !strings.Contains(s.Reason, "relay") {
		t.Fatalf("a relay-denying job behind symmetric NATs: %s: %s", s.State, s.Reason)
	}
	t.Logf("relay denied: %s", s.Reason)
}

// waitRankPaths waits while the job runs until each rank's provider
// reports its path to the other's, and traffic on it: on the path this
// topology allows, once the hole puncher has had its go (behind cone NATs
// the ranks may start on the relay and move to the punched connection).
// It returns each rank's path.
func waitRankPaths(t *testing.T, req, id, want string) map[string]string {
	t.Helper()
	seen := map[string]string{}
	p2ptest.WaitFor(t, 90*time.Second, func() bool {
		var list []struct {
			ID      string `json:"id"`
			GroupOf string `json:"group_of"`
			State   string `json:"state"`
			Network *struct {
				Peers []struct {
					Path    string `json:"path"`
					TxBytes uint64 `json:"tx_bytes"`
					RxBytes uint64 `json:"rx_bytes"`
				} `json:"peers"`
			} `json:"network"`
		}
		runJSON(t, req, &list, "job", "list")
		for _, j := range list {
			if j.ID != id && j.GroupOf != id {
				continue // the refused job's
			}
			if j.State == "failed" {
				t.Fatalf("rank %s failed:\n%s\n%s", j.ID, mustRun(t, req, "job", "status", j.ID), mustRun(t, req, "job", "logs", j.ID))
			}
			if j.Network == nil || len(j.Network.Peers) != 1 {
				continue
			}
			if p := j.Network.Peers[0]; p.TxBytes > 0 && p.RxBytes > 0 {
				seen[j.ID] = p.Path
			}
		}
		for _, p := range seen {
			if p != want {
				return false
			}
		}
		return len(seen) == 2
	}, "ranks' traffic never seen on a %s path (paths seen last: %v)\n%s", want, &seen, later(func() string { return mustRun(t, req, "job", "list") }))
	return seen
}
