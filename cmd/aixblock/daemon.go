package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/aixblock/aixblock/chain"
	"github.com/aixblock/aixblock/node"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// shutdownLimit is how long a signalled daemon may take before it is cut off.
const shutdownLimit = 5 * time.Second

// daemonFlags are the daemon's flags, each overriding the repo's config
// for this run only when given.
type daemonFlags struct {
	listen, announce []string
	bootstrap        []string
	api, network     string
	gpuMock          string
	gateway          string
	mdns, nat        bool
	logLevel         string
	passFile         string
	devchainFile     string
	prices           []string
	voucherEvery     string
	redeemEvery      string
	background       bool
}

func newDaemonCmd(g *globals) *cobra.Command {
	var df daemonFlags
	cmd := &cobra.Command{
		Use:   "daemon",
		Short: "Run the node",
		Long: `Run the node until SIGINT or SIGTERM.

Flags override the repo's config.json for this run only. When the API is
ready its URL is written to <repo>/api, which other commands read.

--background starts the daemon as a process of its own (its log in
<repo>/daemon.log), waits until its API answers, prints its peer ID and
API, and returns; aixblock shutdown stops it.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if df.background {
				return startBackground(cmd, g)
			}
			return runDaemon(cmd.Flags(), g, &df)
		},
	}
	df.register(cmd.Flags())
	return cmd
}

func (df *daemonFlags) register(f *pflag.FlagSet) {
	f.StringArrayVar(&df.listen, "listen", nil, "libp2p listen multiaddr (repeatable)")
	f.StringArrayVar(&df.announce, "announce", nil, "address to advertise instead of the listen addresses (repeatable)")
	f.StringArrayVar(&df.bootstrap, "bootstrap", nil, "bootstrap peer multiaddr with /p2p/<peer-id> (repeatable)")
	f.StringVar(&df.api, "api", "", "HOST:PORT of the local API (port 0 picks one)")
	f.StringVar(&df.network, "network", "", "network name")
	f.StringVar(&df.gateway, "gateway", "", `HOST:PORT of the trustless IPFS gateway ("off" disables it)`)
	f.StringVar(&df.gpuMock, "gpu-mock", "", "use a mock GPU server instead of NVML: dgxa100, dgxh100, dgxh200 or dgxb200")
	f.BoolVar(&df.mdns, "mdns", true, "discover peers on the LAN with mDNS")
	f.BoolVar(&df.nat, "nat", true, "NAT port mapping, AutoNAT, relay client and hole punching")
	f.StringArrayVar(&df.prices, "price", nil, "CLASS=AMOUNT per GPU-hour to provide at (repeatable; replaces the config's prices for this run)")
	f.StringVar(&df.redeemEvery, "redeem-every", "", `how often a provider redeems its vouchers, e.g. 10m (default 1h; "off")`)
	f.StringVar(&df.voucherEvery, "voucher-interval", "", "how often to pay for running market jobs, e.g. 2s (default 30s)")
	f.StringVar(&df.devchainFile, "devchain", "", "pay on the chain described by `FILE`, as written by aixblock devchain --out FILE (this run only)")
	f.StringVar(&df.passFile, "passphrase-file", "", "file holding the wallet's passphrase (else env AIXBLOCK_PASSPHRASE_FILE or AIXBLOCK_PASSPHRASE)")
	f.BoolVar(&df.background, "background", false, "run detached: return once the API answers (log in REPO/daemon.log)")
	f.StringVar(&df.logLevel, "log-level", envOr("AIXBLOCK_LOG_LEVEL", "info"), "debug, info, warn or error (env AIXBLOCK_LOG_LEVEL)")
}

// runDaemon runs the node in this process until SIGINT or SIGTERM.
func runDaemon(f *pflag.FlagSet, g *globals, df *daemonFlags) error {
	log, err := newLogger(df.logLevel)
	if err != nil {
		return err
	}
	repo, err := node.Open(g.repo)
	if err != nil {
		return err
	}
	if err := df.apply(f, &repo.Config); err != nil {
		return err
	}
	if err := repo.Lock(); err != nil {
		return err
	}
	defer repo.Unlock()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		<-ctx.Done()
		time.Sleep(shutdownLimit)
		log.Error("shutdown took too long; exiting", "limit", shutdownLimit)
		os.Exit(2)
	}()

	if repo.Passphrase, err = chain.ReadPassphrase(df.passFile); err != nil {
		return err
	}
	n, err := node.New(ctx, repo, log)
	if err != nil {
		return err
	}
	n.SetTestnet(testnetView{})
	return n.Run(ctx)
}

// apply overrides the config with the flags given on the command line,
// and checks the result.
func (df *daemonFlags) apply(f *pflag.FlagSet, c *node.Config) error {
	if f.Changed("listen") {
		c.Listen = df.listen
	}
	if f.Changed("announce") {
		c.Announce = df.announce
	}
	if f.Changed("bootstrap") {
		c.Bootstrap = df.bootstrap
	}
	if f.Changed("api") {
		c.API = df.api
	}
	if f.Changed("network") {
		c.Network = df.network
	}
	if f.Changed("gateway") {
		c.Gateway = df.gateway
	}
	if f.Changed("gpu-mock") {
		c.GPU.Mock = df.gpuMock
	}
	if f.Changed("price") {
		c.Market.Prices = nil
		if err := setPrices(c, df.prices); err != nil {
			return err
		}
	}
	if f.Changed("voucher-interval") {
		c.Market.VoucherInterval = df.voucherEvery
	}
	if f.Changed("redeem-every") {
		c.Market.RedeemEvery = df.redeemEvery
	}
	if df.devchainFile != "" {
		var err error
		if c.Chain, err = node.DevChainConfigFor(df.devchainFile); err != nil {
			return err
		}
	}
	if f.Changed("mdns") {
		c.MDNS = df.mdns
	}
	if f.Changed("nat") {
		c.NAT = df.nat
	}
	return c.Validate()
}

func newLogger(level string) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(strings.ToUpper(level))); err != nil {
		return nil, fmt.Errorf("log-level %q: want debug, info, warn or error", level)
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: l})), nil
}

func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}

// startBackground runs this same command line, less --background, as a
// process of its own and returns once its API answers; a daemon that exits
// first (a port in use, a locked repo) fails this command with its last
// log line.
func startBackground(cmd *cobra.Command, g *globals) error {
	if _, err := node.Open(g.repo); err != nil {
		return err
	}
	self, err := os.Executable()
	if err != nil {
		return fmt.Errorf("background: %w", err)
	}
	var args []string
	for _, a := range os.Args[1:] {
		if a != "--background" && a != "--background=true" {
			args = append(args, a)
		}
	}
	logPath := filepath.Join(g.repo, "daemon.log")
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("background: %w", err)
	}
	defer logf.Close()
	child := exec.Command(self, args...)
	child.Stdout, child.Stderr = logf, logf
	child.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := child.Start(); err != nil {
		return fmt.Errorf("background: %w", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- child.Wait() }()
	deadline := time.After(60 * time.Second)
	for {
		select {
		case err := <-exited:
			return fmt.Errorf("daemon exited (%v): %s (log: %s)", err, lastLine(logPath), logPath)
		case <-deadline:
			return fmt.Errorf("daemon not ready after 60s (pid %d; log: %s)", child.Process.Pid, logPath)
		case <-time.After(100 * time.Millisecond):
		}
		c, err := g.client()
		if err != nil {
			continue
		}
		ctx, cancel := context.WithTimeout(cmd.Context(), 2*time.Second)
		info, err := c.ID(ctx)
		cancel()
		if err != nil {
			continue
		}
		out := struct {
			PID    int    `json:"pid"`
			PeerID string `json:"peer_id"`
			API    string `json:"api"`
			Log    string `json:"log"`
		}{child.Process.Pid, info.PeerID, c.URL(), logPath}
		return g.print(cmd.OutOrStdout(), out, func(w io.Writer) {
			kv(w, "daemon", fmt.Sprintf("pid %d", out.PID))
			kv(w, "peer_id", out.PeerID)
			kv(w, "api", out.API)
			kv(w, "log", out.Log)
		})
	}
}

// lastLine is the last non-empty line of a file: a failed daemon's reason.
func lastLine(path string) string {
	b, _ := os.ReadFile(path)
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	return lines[len(lines)-1]
}

func newShutdownCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "shutdown",
		Short: "Stop the running daemon (as Ctrl-C or SIGTERM would)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			if err := c.Shutdown(cmd.Context()); err != nil {
				return err
			}
			// Done when the daemon has let go of its repo's api file.
			for range 100 {
				if _, err := os.Stat(filepath.Join(g.repo, "api")); os.IsNotExist(err) {
					return g.print(cmd.OutOrStdout(), map[string]bool{"stopped": true}, func(w io.Writer) { fmt.Fprintln(w, "daemon stopped") })
				}
				time.Sleep(100 * time.Millisecond)
			}
			return fmt.Errorf("the daemon did not stop within 10s; its log is %s; stop it with SIGTERM (or SIGKILL) to its process", filepath.Join(g.repo, "daemon.log"))
		},
	}
}
