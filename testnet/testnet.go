// Package testnet runs a whole local network on one machine: a dev chain
// with JSON-RPC on loopback and the contracts deployed, and N daemons with
// funded wallets, bootstrapped to each other; every node but node0 rents
// out mock GPUs (node0 is a requester without GPUs). It starts them as
// detached processes of the aixblock binary, records them in
// <dir>/testnet.json, and stops them by process ID.
//
// It drives everything through the binary (init, daemon, id, market), so it
// imports only chain (the dev chain's details), and node can offer it to
// the CLI.
package testnet

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/aixblock/aixblock/chain"
)

// Files in a repo that the testnet reads (node's names, repeated: node
// imports this package, not the other way).
const (
	configFile = "config.json"
	apiFile    = "api"
)

// cli runs the binary with --json and decodes its output.
func cli(bin, repo string, v any, args ...string) error {
	out, err := exec.Command(bin, append([]string{"--repo", repo, "--json"}, args...)...).Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return fmt.Errorf("aixblock %v: %s", args, ee.Stderr)
		}
		return err
	}
	return json.Unmarshal(out, v)
}

// Config says what to start.
type Config struct {
	// Dir holds the repos, logs and testnet.json; required.
	Dir string
	// Nodes is how many daemons; zero means 4 (node0 and three providers).
	Nodes int
	// GPUMock names the providers' mock GPUs; empty means dgxh100.
	GPUMock string
	// Price per GPU-hour in tUSD; empty means 2.
	Price string
	// Bin is the aixblock binary; empty means this executable.
	Bin string
	// VoucherInterval of the daemons; empty means 2s.
	VoucherInterval string
	// Network name; empty means "testnet".
	Network string
}

// Node is one daemon of the testnet.
type Node struct {
	Name   string `json:"name"`
	Repo   string `json:"repo"`
	PeerID string `json:"peer_id"`
	API    string `json:"api"`
	GPUs   string `json:"gpus"`
	Wallet string `json:"wallet"`
	PID    int    `json:"pid"`
	Up     bool   `json:"up"`
}

// Info is testnet.json.
type Info struct {
	Dir         string             `json:"dir"`
	Network     string             `json:"network"`
	Chain       chain.DevChainInfo `json:"chain"`
	DevchainPID int                `json:"devchain_pid"`
	Nodes       []Node             `json:"nodes"`
	// Stopped is how many processes the last Down stopped (0: nothing was
	// running).
	Stopped int `json:"stopped"`
}

const infoFile = "testnet.json"

// Up starts the testnet and waits until node0's market sees every provider.
func Up(ctx context.Context, cfg Config) (*Info, error) {
	if err := cfg.withDefaults(); err != nil {
		return nil, err
	}
	dir, err := filepath.Abs(cfg.Dir)
	if err != nil {
		return nil, err
	}
	if old, err := Status(dir); err == nil && old.DevchainPID != 0 && alive(old.DevchainPID) {
		return nil, fmt.Errorf("testnet: one is already running in %s (aixblock testnet down --dir %s)", dir, dir)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	info := &Info{Dir: dir, Network: cfg.Network}
	if err := startAll(ctx, cfg, info); err != nil {
		down(info)
		return nil, err
	}
	return info, waitProviders(ctx, cfg, info)
}

func (cfg *Config) withDefaults() error {
	if cfg.Dir == "" {
		return errors.New("testnet: no directory")
	}
	if cfg.Nodes == 0 {
		cfg.Nodes = 4
	}
	if cfg.Nodes < 2 || cfg.Nodes > 50 {
		return fmt.Errorf("testnet: nodes %d: want 2 to 50", cfg.Nodes)
	}
	if cfg.GPUMock == "" {
		cfg.GPUMock = "dgxh100"
	}
	if cfg.Price == "" {
		cfg.Price = "2"
	}
	if cfg.VoucherInterval == "" {
		cfg.VoucherInterval = "2s"
	}
	if cfg.Network == "" {
		cfg.Network = "testnet"
	}
	if cfg.Bin == "" {
		exe, err := os.Executable()
		if err != nil {
			return err
		}
		cfg.Bin = exe
	}
	return nil
}

// startAll starts the dev chain and then the daemons one by one, each
// bootstrapping from node0, and records them in testnet.json; what it
// started is in info, for the caller to stop on an error.
func startAll(ctx context.Context, cfg Config, info *Info) error {
	chainFile, err := startChain(ctx, cfg, info)
	if err != nil {
		return err
	}
	var boot string
	for i := 0; i < cfg.Nodes; i++ {
		if boot, err = startNode(ctx, cfg, info, i, chainFile, boot); err != nil {
			return err
		}
	}
	return save(info)
}

// startChain starts the dev chain with an account for each node (and the
// deployer's) and reads its details into info.Chain; it returns the file
// the nodes read them from.
func startChain(ctx context.Context, cfg Config, info *Info) (string, error) {
	chainFile := filepath.Join(info.Dir, "devchain.json")
	os.Remove(chainFile)
	pid, err := spawn(cfg.Bin, filepath.Join(info.Dir, "devchain.log"), "devchain", "--http", "127.0.0.1:0",
		"--accounts", strconv.Itoa(cfg.Nodes+1), "--challenge", "1m", "--out", chainFile)
	if err != nil {
		return "", err
	}
	info.DevchainPID = pid
	if err := waitFile(ctx, chainFile, pid, filepath.Join(info.Dir, "devchain.log")); err != nil {
		return "", err
	}
	b, _ := os.ReadFile(chainFile)
	if err := json.Unmarshal(b, &info.Chain); err != nil {
		return "", fmt.Errorf("testnet: %s: %w", chainFile, err)
	}
	return chainFile, nil
}

// startNode initializes node i's repo unless it exists (a provider with
// mock GPUs and a price, but node0), starts its daemon, bootstrapping
// from boot, and adds it to info once it answers; it returns the address
// the next nodes bootstrap from.
func startNode(ctx context.Context, cfg Config, info *Info, i int, chainFile, boot string) (string, error) {
	name := fmt.Sprintf("node%d", i)
	repo := filepath.Join(info.Dir, name)
	nd := Node{Name: name, Repo: repo, GPUs: "none"}
	if err := initRepo(cfg, info, i, chainFile); err != nil {
		return "", err
	}
	if i > 0 {
		nd.GPUs = cfg.GPUMock
	}
	os.Remove(filepath.Join(repo, apiFile))
	// The ports go into config.json, so that it shows what the node
	// really uses (and a restart of one node keeps them).
	if err := pinPorts(filepath.Join(repo, configFile)); err != nil {
		return "", fmt.Errorf("testnet: %s: %w", name, err)
	}
	args := []string{"--repo", repo, "daemon", "--network", cfg.Network,
		"--devchain", chainFile, "--voucher-interval", cfg.VoucherInterval}
	if boot != "" {
		args = append(args, "--bootstrap", boot)
	}
	log := filepath.Join(info.Dir, name+".log")
	var err error
	if nd.PID, err = spawn(cfg.Bin, log, args...); err != nil {
		return "", err
	}
	info.Nodes = append(info.Nodes, nd)
	if err := waitFile(ctx, filepath.Join(repo, apiFile), nd.PID, log); err != nil {
		return "", fmt.Errorf("testnet: %s: %w", name, err)
	}
	var id struct {
		PeerID string   `json:"peer_id"`
		Addrs  []string `json:"addrs"`
		Wallet string   `json:"wallet"`
	}
	if err := cli(cfg.Bin, repo, &id, "id"); err != nil {
		return "", err
	}
	api, _ := os.ReadFile(filepath.Join(repo, apiFile))
	info.Nodes[i].PeerID, info.Nodes[i].API, info.Nodes[i].Wallet, info.Nodes[i].Up = id.PeerID, strings.TrimSpace(string(api)), id.Wallet, true
	if boot == "" && len(id.Addrs) > 0 {
		boot = id.Addrs[0]
	}
	return boot, nil
}

// initRepo runs `aixblock init` for node i with dev account i+1's key,
// unless its repo has a config already.
func initRepo(cfg Config, info *Info, i int, chainFile string) error {
	name := fmt.Sprintf("node%d", i)
	repo := filepath.Join(info.Dir, name)
	if _, err := os.Stat(filepath.Join(repo, configFile)); err == nil {
		return nil
	}
	key := filepath.Join(info.Dir, name+".key")
	if err := os.WriteFile(key, []byte(info.Chain.Accounts[i+1].PrivateKey), 0o600); err != nil {
		return err
	}
	args := []string{"--repo", repo, "init", "--network", cfg.Network, "--devchain", chainFile, "--wallet-key", key}
	if i > 0 {
		args = append(args, "--gpu-mock", cfg.GPUMock, "--price", "*="+cfg.Price)
	}
	if out, err := exec.Command(cfg.Bin, args...).CombinedOutput(); err != nil {
		return fmt.Errorf("testnet: init %s: %v: %s", name, err, out)
	}
	return nil
}

// waitProviders waits, a minute at most, until the requester's market
// sees every provider.
func waitProviders(ctx context.Context, cfg Config, info *Info) error {
	deadline := time.Now().Add(60 * time.Second)
	for {
		var p struct {
			Providers []struct{} `json:"providers"`
		}
		err := cli(cfg.Bin, info.Nodes[0].Repo, &p, "market", "providers")
		if err == nil && len(p.Providers) >= cfg.Nodes-1 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("testnet: node0 sees %d of %d providers after a minute (logs in %s)", len(p.Providers), cfg.Nodes-1, info.Dir)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(300 * time.Millisecond):
		}
	}
}

// spawn starts the binary in a session of its own, so that it outlives the
// command that started it, with its output in log.
func spawn(bin, log string, args ...string) (int, error) {
	f, err := os.OpenFile(log, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return 0, fmt.Errorf("testnet: start %s: %w", args[0], err)
	}
	go cmd.Wait() // reap it if it ends while we still run
	return cmd.Process.Pid, nil
}

func waitFile(ctx context.Context, path string, pid int, log string) error {
	deadline := time.Now().Add(30 * time.Second)
	for {
		if b, err := os.ReadFile(path); err == nil && len(b) > 0 {
			return nil
		}
		if !alive(pid) {
			b, _ := os.ReadFile(log)
			return fmt.Errorf("process %d exited: %s", pid, lastLines(string(b), 5))
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not written after 30s (log %s)", path, log)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func lastLines(s string, n int) string {
	lines := []string{}
	for _, l := range splitLines(s) {
		if l != "" {
			lines = append(lines, l)
		}
	}
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	out := ""
	for _, l := range lines {
		out += l + "; "
	}
	return out
}

func splitLines(s string) []string {
	var out []string
	start := 0
	for i, c := range s {
		if c == '\n' {
			out = append(out, s[start:i])
			start = i + 1
		}
	}
	return append(out, s[start:])
}

func alive(pid int) bool {
	p, err := os.FindProcess(pid)
	if err != nil {
		return false
	}
	if p.Signal(syscall.Signal(0)) != nil {
		return false
	}
	// A zombie answers signal 0; its /proc state says Z.
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true
	}
	for i := len(b) - 1; i > 0; i-- {
		if b[i] == ')' && i+2 < len(b) {
			return b[i+2] != 'Z'
		}
	}
	return true
}

func save(info *Info) error {
	b, _ := json.MarshalIndent(info, "", "  ")
	return os.WriteFile(filepath.Join(info.Dir, infoFile), append(b, '\n'), 0o600)
}

// Status reads testnet.json and says which processes are up.
func Status(dir string) (*Info, error) {
	dir, _ = filepath.Abs(dir)
	b, err := os.ReadFile(filepath.Join(dir, infoFile))
	if err != nil {
		return nil, fmt.Errorf("testnet: no testnet in %s (aixblock testnet up --dir %s): %w", dir, dir, err)
	}
	var info Info
	if err := json.Unmarshal(b, &info); err != nil {
		return nil, fmt.Errorf("testnet: %s is corrupt: %w", infoFile, err)
	}
	for i := range info.Nodes {
		info.Nodes[i].Up = alive(info.Nodes[i].PID)
	}
	return &info, nil
}

// Down stops what Up started, by process ID; purge also removes the
// directory.
func Down(dir string, purge bool) (*Info, error) {
	info, err := Status(dir)
	if err != nil {
		return nil, err
	}
	info.Stopped = down(info)
	// The process IDs are spent: a later down or status must not signal
	// whatever process reuses them.
	info.DevchainPID = 0
	for i := range info.Nodes {
		info.Nodes[i].Up, info.Nodes[i].PID = false, 0
	}
	if purge {
		return info, os.RemoveAll(info.Dir)
	}
	return info, save(info)
}

// down stops every process of info that still runs and says how many did.
func down(info *Info) int {
	var pids []int
	for _, pid := range append([]int{info.DevchainPID}, nodePIDs(info)...) {
		if pid > 0 && alive(pid) {
			pids = append(pids, pid)
		}
	}
	for _, pid := range pids {
		syscall.Kill(pid, syscall.SIGTERM)
	}
	deadline := time.Now().Add(8 * time.Second)
	for _, pid := range pids {
		for pid > 0 && alive(pid) && time.Now().Before(deadline) {
			time.Sleep(50 * time.Millisecond)
		}
		if pid > 0 && alive(pid) {
			syscall.Kill(pid, syscall.SIGKILL)
		}
	}
	return len(pids)
}

func nodePIDs(info *Info) []int {
	var out []int
	for _, n := range info.Nodes {
		out = append(out, n.PID)
	}
	return out
}

// pinPorts writes loopback-only listen, API and gateway addresses on free
// ports into a repo's config.json, with mDNS and NAT traversal off: a
// testnet never leaves the machine. Ports already pinned are kept.
func pinPorts(path string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	var c map[string]any
	if err := json.Unmarshal(b, &c); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	if api, _ := c["api"].(string); !strings.HasPrefix(api, "127.0.0.1:") || api == "127.0.0.1:5901" {
		ports, err := freePorts(3)
		if err != nil {
			return err
		}
		c["listen"] = []string{fmt.Sprintf("/ip4/127.0.0.1/tcp/%d", ports[0])}
		c["api"] = fmt.Sprintf("127.0.0.1:%d", ports[1])
		c["gateway"] = fmt.Sprintf("127.0.0.1:%d", ports[2])
	}
	c["mdns"], c["nat"] = false, false
	out, err := json.MarshalIndent(c, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(out, '\n'), 0o600)
}

// freePorts finds n free TCP ports on loopback.
func freePorts(n int) ([]int, error) {
	var out []int
	var lns []net.Listener
	defer func() {
		for _, l := range lns {
			l.Close()
		}
	}()
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("free port: %w", err)
		}
		lns = append(lns, l)
		out = append(out, l.Addr().(*net.TCPAddr).Port)
	}
	return out, nil
}
