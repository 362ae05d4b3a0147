package main

import (
	"context"
	"crypto/ecdsa"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/aixblock/aixblock/chain"
	"github.com/aixblock/aixblock/node"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// chainRPCEnv is where `init --chain` and the chain commands find the RPC
// URL when --chain-rpc is not given.
const chainRPCEnv = "AIXBLOCK_CHAIN_RPC"

func newChainCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "chain",
		Short: "Put the escrow on a chain, check a chain, fund dev wallets",
		Long: `Work with the chain the node pays on, without a daemon.

The escrow lives at a deterministic address (CREATE2 through the standard
deterministic-deployment proxy, 0x4e59b44847b379578588920cA78FbF26c0B4956C):
for a given challenge period it is the same on every chain. ` + "`chain deploy`" + `
puts it there (and a test token on dev and test networks); ` + "`init --chain NAME`" + `
points a repo at a network of the built-in table (` + "`chain networks`" + `).

The RPC URL comes from --chain-rpc, else $` + chainRPCEnv + `, else the repo's
chain.rpc. Transactions are paid by --key-file (a hex private key) or else
the repo's wallet (passphrase as for the daemon).`,
	}
	cmd.AddCommand(newChainNetworksCmd(g), newChainDeployCmd(g), newChainFundCmd(g), newChainCheckCmd(g))
	return cmd
}

// chainFlags are how the chain commands find the chain and the key.
type chainFlags struct {
	name, rpc, keyFile, passFile string
}

func (f *chainFlags) add(fs *pflag.FlagSet, key bool) {
	fs.StringVar(&f.name, "chain", "", "a network of the built-in table (aixblock chain networks): its chain ID is checked")
	fs.StringVar(&f.rpc, "chain-rpc", "", "EVM JSON-RPC URL (default $"+chainRPCEnv+", else the repo's chain.rpc)")
	if key {
		fs.StringVar(&f.keyFile, "key-file", "", "file holding the hex private key that pays (default: the repo's wallet)")
		fs.StringVar(&f.passFile, "passphrase-file", "", "file holding the repo wallet's passphrase (else env AIXBLOCK_PASSPHRASE_FILE or AIXBLOCK_PASSPHRASE)")
	}
}

// chainTarget is the chain a command works on.
type chainTarget struct {
	net   chain.Network // zero Name: not named
	rpc   string
	repo  *node.Config // the repo's config, when there is a repo
	b     *chain.Failover
	id    uint64
	label string // "11155111 (sepolia)"
}

func (t *chainTarget) Close() {
	if t.b != nil {
		t.b.Close()
	}
}

// connect finds the RPC URL, dials it and checks the chain ID against
// --chain's.
func (f *chainFlags) connect(ctx context.Context, g *globals) (*chainTarget, error) {
	t := &chainTarget{rpc: f.rpc}
	if f.name != "" {
		n, err := chain.LookupNetwork(f.name)
		if err != nil {
			return nil, err
		}
		t.net = n
	}
	if r, err := node.Open(g.repo); err == nil {
		t.repo = &r.Config
	}
	if t.rpc == "" {
		t.rpc = os.Getenv(chainRPCEnv)
	}
	if t.rpc == "" && t.repo != nil {
		t.rpc = t.repo.Chain.RPC
	}
	if t.rpc == "" {
		return nil, fmt.Errorf("no RPC URL: give --chain-rpc URL or set %s (the embedded dev chain of a daemon deploys its own contracts; for a dev chain others can use, run aixblock devchain)", chainRPCEnv)
	}
	b, id, err := dialChain(ctx, t.rpc)
	if err != nil {
		return nil, err
	}
	t.b, t.id = b, id
	if n, ok := chain.NetworkByChainID(id); ok {
		t.label = fmt.Sprintf("%d (%s)", id, n.Name)
		if t.net.Name == "" {
			t.net = n
		}
	} else {
		t.label = fmt.Sprint(id)
	}
	if f.name != "" && t.net.ChainID != id {
		b.Close()
		return nil, fmt.Errorf("chain id: %s serves chain %s, not %d (%s): check the RPC URL", t.rpc, t.label, t.net.ChainID, t.net.Name)
	}
	return t, nil
}

// dialChain connects to rpc (chain.rpc may list several URLs,
// comma-separated, tried in turn) and reads its chain ID within 15 s.
func dialChain(ctx context.Context, rpc string) (*chain.Failover, uint64, error) {
	var urls []string
	for _, u := range strings.Split(rpc, ",") {
		if u = strings.TrimSpace(u); u != "" {
			urls = append(urls, u)
		}
	}
	if len(urls) == 0 {
		return nil, 0, fmt.Errorf("chain rpc %q: no URL", rpc)
	}
	b, err := chain.DialFailover(urls, 15*time.Second, slog.New(slog.DiscardHandler))
	if err != nil {
		return nil, 0, err
	}
	id, err := b.ChainID(ctx)
	if err != nil {
		b.Close()
		return nil, 0, fmt.Errorf("chain rpc %s: cannot reach it: %w", rpc, err)
	}
	return b, id.Uint64(), nil
}

// key is the paying key: --key-file, else the repo's wallet.
func (f *chainFlags) key(g *globals) (*ecdsa.PrivateKey, error) {
	if f.keyFile != "" {
		return node.ReadKeyFile(f.keyFile)
	}
	if _, err := chain.WalletAddress(node.KeystoreDir(g.repo)); err != nil {
		return nil, fmt.Errorf("no key to pay with: give --key-file FILE (a hex private key holding ETH on the chain) or --repo of a node whose wallet holds some (%v)", err)
	}
	pass, err := chain.ReadPassphrase(f.passFile)
	if err != nil {
		return nil, err
	}
	w, err := chain.OpenWallet(node.KeystoreDir(g.repo), pass)
	if err != nil {
		return nil, err
	}
	return w.Key(), nil
}

// signalContext is cmd's context, ended by SIGINT or SIGTERM.
func signalContext(cmd *cobra.Command) (context.Context, context.CancelFunc) {
	return signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
}

// chainLogger logs progress (transactions sent, waits) to stderr, unless
// --json asks for quiet.
func chainLogger(g *globals, cmd *cobra.Command) *slog.Logger {
	if g.json {
		return slog.New(slog.DiscardHandler)
	}
	return slog.New(slog.NewTextHandler(cmd.ErrOrStderr(), &slog.HandlerOptions{Level: slog.LevelInfo}))
}

// networkOut is a network of the table as `chain networks` prints it.
type networkOut struct {
	chain.Network
	ChallengePeriodS uint64 `json:"challenge_period_s"`
}

func newChainNetworksCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "networks",
		Short: "List the built-in networks: chain ID, escrow, stablecoin, confirmations",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var out []networkOut
			for _, n := range chain.Networks() {
				out = append(out, networkOut{n, n.ChallengePeriodS()})
			}
			return g.print(cmd.OutOrStdout(), out, func(w io.Writer) {
				fmt.Fprintln(w, "NAME\tCHAIN ID\tESCROW\tCHALLENGE\tTOKEN\tCONFIRMATIONS\tLOG RANGE")
				for _, n := range out {
					lr := "-"
					if n.LogRange > 0 {
						lr = fmt.Sprint(n.LogRange)
					}
					fmt.Fprintf(w, "%s\t%d\t%s\t%s\t%s %s\t%d\t%s\n", n.Name, n.ChainID, n.Escrow.Hex(), n.ChallengePeriod,
						n.TokenSymbol, n.Token.Hex(), n.Confirmations, lr)
				}
			})
		},
	}
}

func newChainDeployCmd(g *globals) *cobra.Command {
	var f chainFlags
	var challenge time.Duration
	var testToken bool
	var confirmations uint64
	cmd := &cobra.Command{
		Use:   "deploy",
		Short: "Put the escrow (and with --test-token a test token) on a chain at their deterministic addresses",
		Long: `Put the escrow on the chain at its deterministic address, and with
--test-token (implied on the dev network) the test token tUSD, which anyone
can mint. What is there already is checked and left alone: a second run
sends nothing. Where the chain lacks the deterministic-deployment proxy it
is installed first, by its presigned transaction (0.01 ETH for its one-time
deployer, paid by the key).

The escrow's address depends on its challenge period (--challenge; default
the network's: ` + chain.DevChallengePeriod.String() + ` on dev, ` + chain.PublicChallengePeriod.String() + ` elsewhere).`,
		Example: `  aixblock chain deploy --chain sepolia --chain-rpc https://... --key-file deployer.key
  aixblock chain deploy --chain dev --chain-rpc http://127.0.0.1:8545 --key-file k0`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := signalContext(cmd)
			defer stop()
			t, err := f.connect(ctx, g)
			if err != nil {
				return err
			}
			defer t.Close()
			key, err := f.key(g)
			if err != nil {
				return err
			}
			if t.net.Dev {
				testToken = true
			}
			if confirmations == 0 {
				confirmations = t.net.Confirmations
			}
			d, err := chain.Deploy(ctx, t.b, key, chain.DeployConfig{ChallengePeriod: challenge, TestToken: testToken,
				Confirmations: confirmations, Logger: chainLogger(g, cmd)})
			if err != nil {
				return err
			}
			// The URL as the user gave it (init reads $AIXBLOCK_CHAIN_RPC too).
			rpcArg := " --chain-rpc URL"
			if f.rpc != "" {
				rpcArg = " --chain-rpc " + f.rpc
			} else if os.Getenv(chainRPCEnv) != "" {
				rpcArg = ""
			}
			next := "aixblock init" + rpcArg + " --escrow " + d.Escrow.Address.Hex()
			if t.net.Name != "" {
				next = "aixblock init --chain " + t.net.Name + rpcArg
				if d.Escrow.Address != t.net.Escrow {
					next += " --escrow " + d.Escrow.Address.Hex()
				}
			}
			if d.Token != nil && (t.net.Name == "" || d.Token.Address != t.net.Token) {
				next += " --token test"
			} else if t.net.Name == "" {
				next += " --token ADDR"
			}
			out := struct {
				*chain.Deployment
				RPC  string `json:"rpc"`
				Next string `json:"next"`
			}{d, t.rpc, next}
			return g.print(cmd.OutOrStdout(), out, func(w io.Writer) {
				kv(w, "chain", t.label)
				kv(w, "deployer", d.Deployer.Hex())
				kv(w, "proxy", deployedText(d.Proxy))
				kv(w, "escrow", deployedText(d.Escrow))
				kv(w, "challenge_period", time.Duration(d.ChallengePeriodS)*time.Second)
				if d.Token != nil {
					kv(w, "token", deployedText(*d.Token)+fmt.Sprintf("  (%s, %d decimals)", d.TokenSymbol, d.TokenDecimals))
				}
				kv(w, "next", next)
			})
		},
	}
	f.add(cmd.Flags(), true)
	cmd.Flags().DurationVar(&challenge, "challenge", 0, "the escrow's challenge period, whole seconds (default: the network's)")
	cmd.Flags().BoolVar(&testToken, "test-token", false, "also deploy the test token tUSD (anyone can mint it: refused on mainnets)")
	cmd.Flags().Uint64Var(&confirmations, "confirmations", 0, "blocks each transaction waits for (default: the network's, else 1)")
	return cmd
}

func deployedText(d chain.Deployed) string {
	if d.Found {
		return d.Address.Hex() + "  found"
	}
	return fmt.Sprintf("%s  deployed in block %d, tx %s (%d gas)", d.Address.Hex(), d.Block, d.Tx, d.GasUsed)
}

func newChainFundCmd(g *globals) *cobra.Command {
	var f chainFlags
	var eth, tokens, token string
	cmd := &cobra.Command{
		Use:   "fund ADDRESS...",
		Short: "Send ETH and mint test tokens to wallets, on dev and test networks",
		Long: `Send --eth of the chain's coin from the paying key, and mint --tokens of the
test token (anyone can mint it; or --token, another token with a public
mint) to each ADDRESS: how an operator gives wallets on a dev or test
network what they need. Minting is refused on mainnets.`,
		Example: `  aixblock chain fund 0xabc... --eth 1 --tokens 1000 --chain-rpc http://127.0.0.1:8545 --key-file k0
  aixblock chain fund "$(aixblock --repo prov wallet address)" --tokens 50`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var to []chain.Address
			for _, a := range args {
				if !chain.IsAddress(a) {
					return fmt.Errorf("address %q: want 0x and 40 hex digits", a)
				}
				to = append(to, chain.HexAddress(a))
			}
			if eth == "" && tokens == "" {
				return errors.New("nothing to send: give --eth AMOUNT, --tokens AMOUNT or both")
			}
			ctx, stop := signalContext(cmd)
			defer stop()
			t, err := f.connect(ctx, g)
			if err != nil {
				return err
			}
			defer t.Close()
			fc := chain.FundConfig{To: to, Logger: chainLogger(g, cmd)}
			if eth != "" {
				if fc.ETH, err = chain.ParseUnits(eth, 18); err != nil {
					return fmt.Errorf("--eth: %w", err)
				}
			}
			symbol, decimals := "", uint8(0)
			if tokens != "" {
				if fc.Token, err = fundToken(token, t); err != nil {
					return err
				}
				if symbol, decimals, err = chain.ReadToken(ctx, t.b, fc.Token); err != nil {
					return fmt.Errorf("token %s on chain %s: %w (deploy the test token with aixblock chain deploy --test-token)", fc.Token.Hex(), t.label, err)
				}
				if fc.Tokens, err = chain.ParseUnits(tokens, decimals); err != nil {
					return fmt.Errorf("--tokens: %w", err)
				}
			}
			key, err := f.key(g)
			if err != nil {
				return err
			}
			sent, err := chain.Fund(ctx, t.b, key, fc)
			if err != nil {
				return err
			}
			out := struct {
				ChainID uint64         `json:"chain_id"`
				Token   string         `json:"token,omitempty"`
				Symbol  string         `json:"token_symbol,omitempty"`
				Sent    []chain.Funded `json:"sent"`
			}{t.id, "", symbol, sent}
			if tokens != "" {
				out.Token = fc.Token.Hex()
			}
			return g.print(cmd.OutOrStdout(), out, func(w io.Writer) {
				kv(w, "chain", t.label)
				for _, s := range sent {
					amount := chain.FormatUnits(s.Amount.Big(), 18) + " ETH"
					if s.What == "mint" {
						amount = chain.FormatUnits(s.Amount.Big(), decimals) + " " + symbol
					}
					kv(w, s.To.Hex(), amount+"  tx "+s.Tx)
				}
			})
		},
	}
	f.add(cmd.Flags(), true)
	cmd.Flags().StringVar(&eth, "eth", "", "ETH (the chain's coin) to send each address, e.g. 0.5")
	cmd.Flags().StringVar(&tokens, "tokens", "", "test tokens to mint for each address, in whole units, e.g. 1000")
	cmd.Flags().StringVar(&token, "token", "", `token to mint: "test" (the deterministic test token) or an address (default: the repo's token on a dev or test chain, else the test token)`)
	return cmd
}

// fundToken is the token `chain fund` mints: --token, else the repo's
// configured token, else the test token.
func fundToken(flag string, t *chainTarget) (chain.Address, error) {
	switch {
	case strings.EqualFold(flag, "test"):
		return chain.TestTokenAddress(), nil
	case flag != "":
		if !chain.IsAddress(flag) {
			return chain.Address{}, fmt.Errorf("--token %q: want test or an address (0x and 40 hex digits)", flag)
		}
		return chain.HexAddress(flag), nil
	case t.repo != nil && chain.IsAddress(t.repo.Chain.Token):
		return chain.HexAddress(t.repo.Chain.Token), nil
	}
	return chain.TestTokenAddress(), nil
}

func newChainCheckCmd(g *globals) *cobra.Command {
	var f chainFlags
	var escrow, token string
	cmd := &cobra.Command{
		Use:   "check",
		Short: "Check a chain: its ID, the escrow's code and challenge period, the token",
		Long: `Check that the chain answers, that its ID is the network's, that the escrow
address holds our escrow (and its challenge period), and that the token is
an ERC-20: what ` + "`init`" + ` checks. Addresses come from --escrow/--token, else
the repo's config when it names this chain, else the network's table entry.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := signalContext(cmd)
			defer stop()
			t, err := f.connect(ctx, g)
			if err != nil {
				return err
			}
			defer t.Close()
			esc, tok := t.net.Escrow, t.net.Token
			if t.repo != nil && t.repo.Chain.RPC != "" && (f.rpc == "" || f.rpc == t.repo.Chain.RPC) {
				if chain.IsAddress(t.repo.Chain.Escrow) {
					esc = chain.HexAddress(t.repo.Chain.Escrow)
				}
				if tk, err := chain.ParseToken(t.repo.Chain.Token, chain.NativeToken); err == nil {
					tok = tk
				}
			}
			if escrow != "" {
				if !chain.IsAddress(escrow) {
					return fmt.Errorf("--escrow %q: want 0x and 40 hex digits", escrow)
				}
				esc = chain.HexAddress(escrow)
			}
			if token != "" {
				if tok, err = parseTokenFlag(token); err != nil {
					return err
				}
			}
			if esc == (chain.Address{}) {
				return fmt.Errorf("chain %s is not in the built-in table: give --escrow", t.label)
			}
			res, err := checkChain(ctx, t.b, t.net, 0, esc, tok)
			if err != nil {
				return err
			}
			return g.print(cmd.OutOrStdout(), res, checkHuman(res, t.rpc))
		},
	}
	f.add(cmd.Flags(), false)
	cmd.Flags().StringVar(&escrow, "escrow", "", "escrow address to check")
	cmd.Flags().StringVar(&token, "token", "", `token to check: an address, "native" or "test"`)
	return cmd
}

// parseTokenFlag reads a token as --token takes it: an address, "native"
// (or "eth"), or "test" for the deterministic test token.
func parseTokenFlag(s string) (chain.Address, error) {
	if strings.EqualFold(s, "test") {
		return chain.TestTokenAddress(), nil
	}
	return chain.ParseToken(s, chain.NativeToken)
}

// checkChain runs chain.CheckChain and adds what to do to its errors.
func checkChain(ctx context.Context, b chain.Backend, net chain.Network, wantID uint64, escrow, token chain.Address) (chain.ChainCheck, error) {
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	res, err := chain.CheckChain(cctx, b, wantID, escrow, token)
	if errors.Is(err, chain.ErrNoEscrow) {
		how := "aixblock chain deploy --chain-rpc URL"
		if net.Name != "" {
			how = "aixblock chain deploy --chain " + net.Name + " --chain-rpc URL"
		}
		if net.Name != "" && escrow == net.Escrow {
			return res, fmt.Errorf("%w: the escrow is not deployed there yet: deploy it with `%s` from a key holding ETH (or give another escrow with --escrow)", err, how)
		}
		return res, fmt.Errorf("%w: check --escrow, or deploy one with `%s` from a key holding ETH", err, how)
	}
	return res, err
}

func checkHuman(res chain.ChainCheck, rpc string) func(io.Writer) {
	return func(w io.Writer) {
		name := fmt.Sprint(res.ChainID)
		if res.Network != "" {
			name += " (" + res.Network + ")"
		}
		kv(w, "chain", name+"  "+rpc)
		kv(w, "escrow", res.Escrow.Address.Hex())
		kv(w, "challenge_period", time.Duration(res.Escrow.ChallengePeriodS)*time.Second)
		kv(w, "token", fmt.Sprintf("%s  %s (%d decimals)", res.Token.Hex(), res.TokenSymbol, res.TokenDecimals))
	}
}
