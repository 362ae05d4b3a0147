package chain

import (
	"context"
	"crypto/ecdsa"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/aixblock/aixblock/contracts"
	"github.com/ethereum/go-ethereum/accounts/abi/bind/v2"
	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/core"
	"github.com/ethereum/go-ethereum/core/rawdb"
	"github.com/ethereum/go-ethereum/core/types"
	"github.com/ethereum/go-ethereum/crypto"
	"github.com/ethereum/go-ethereum/eth"
	"github.com/ethereum/go-ethereum/eth/catalyst"
	"github.com/ethereum/go-ethereum/eth/ethconfig"
	"github.com/ethereum/go-ethereum/eth/filters"
	"github.com/ethereum/go-ethereum/ethclient"
	gethlog "github.com/ethereum/go-ethereum/log"
	"github.com/ethereum/go-ethereum/node"
	"github.com/ethereum/go-ethereum/p2p"
	"github.com/ethereum/go-ethereum/params"
	"github.com/ethereum/go-ethereum/rpc"
)

// DevChainConfig configures an embedded dev chain.
type DevChainConfig struct {
	// HTTP is the JSON-RPC listen address (port 0 picks one); empty means
	// no HTTP server, only the in-process client.
	HTTP string
	// Accounts is how many prefunded accounts to create; zero means 4.
	// Their keys are derived from a fixed seed, so they are the same on
	// every dev chain (never use them on a real one).
	Accounts int
	// Fund are further addresses to prefund (a daemon's own wallet).
	Fund []common.Address
	// ChallengePeriod of the escrow; zero means 10 minutes.
	ChallengePeriod time.Duration
	// DataDir keeps the chain on disk; empty means in memory.
	DataDir string
	// IdleBlock seals an empty block when none came for so long, so that
	// chain time follows the clock (a challenge period ends on a quiet
	// chain too); zero means 2 s, negative never.
	IdleBlock time.Duration
	// Logger receives go-ethereum's errors; nil discards them. The first
	// dev chain of a process sets go-ethereum's (global) logger.
	Logger *slog.Logger
}

// Prefunded amounts on a dev chain.
var (
	DevCoin  = new(big.Int).Mul(big.NewInt(1_000_000), big.NewInt(params.Ether)) // 1,000,000 ETH
	DevToken = big.NewInt(1_000_000 * 1_000_000)                                 // 1,000,000 tUSD (6 decimals)
)

// DevChainParams is the dev chain's configuration: go-ethereum's dev chain
// without the forks still in development (Amsterdam, Bogota, which reprice
// state growth), so that it runs what mainnet runs (through Osaka) and gas
// measured on it is what users pay.
func DevChainParams() *params.ChainConfig {
	c := *params.AllDevChainProtocolChanges
	c.AmsterdamTime, c.BogotaTime = nil, nil
	return &c
}

// DevAccount is a prefunded dev-chain account.
type DevAccount struct {
	Address    common.Address `json:"address"`
	PrivateKey string         `json:"private_key"` // hex, no 0x
}

// DevChainInfo is what a dev chain prints and writes for other tools.
type DevChainInfo struct {
	RPCURL           string           `json:"rpc_url,omitempty"`
	ChainID          uint64           `json:"chain_id"`
	Escrow           common.Address   `json:"escrow"`
	Token            common.Address   `json:"token"`
	ChallengePeriodS uint64           `json:"challenge_period_s"`
	Accounts         []DevAccount     `json:"accounts"`
	Funded           []common.Address `json:"funded,omitempty"`
}

// DevChain is an in-process go-ethereum node on a simulated beacon (the
// machinery behind `geth --dev`): blocks are sealed as soon as a
// transaction arrives. TestToken and Escrow are deployed by account 0.
type DevChain struct {
	Info   DevChainInfo
	stack  *node.Node
	beacon *catalyst.SimulatedBeacon
	eth    *eth.Ethereum
	client *ethclient.Client
	once   sync.Once
	stop   chan struct{}
}

// clockKey sends the empty transactions that keep a quiet chain's time
// moving (blocks are sealed when a transaction arrives).
func clockKey() *ecdsa.PrivateKey {
	k, _ := crypto.ToECDSA(crypto.Keccak256([]byte("aixblock dev chain clock")))
	return k
}

// tick seals a block (through a zero-value transaction of the clock
// account) whenever the head is older than idle.
func (d *DevChain) tick(idle time.Duration, chainID *big.Int) {
	key := clockKey()
	from := crypto.PubkeyToAddress(key.PublicKey)
	signer := types.LatestSignerForChainID(chainID)
	t := time.NewTicker(idle / 4)
	defer t.Stop()
	for {
		select {
		case <-d.stop:
			return
		case <-t.C:
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		head, err := d.client.HeaderByNumber(ctx, nil)
		if err == nil && time.Since(time.Unix(int64(head.Time), 0)) >= idle {
			nonce, err1 := d.client.PendingNonceAt(ctx, from)
			tip, err2 := d.client.SuggestGasTipCap(ctx)
			if err1 == nil && err2 == nil {
				feeCap := new(big.Int).Add(new(big.Int).Mul(head.BaseFee, big.NewInt(2)), tip)
				tx, err := types.SignTx(types.NewTx(&types.DynamicFeeTx{ChainID: chainID, Nonce: nonce, GasTipCap: tip,
					GasFeeCap: feeCap, Gas: 21000, To: &from, Value: new(big.Int)}), signer, key)
				if err == nil {
					d.client.SendTransaction(ctx, tx)
				}
			}
		}
		cancel()
	}
}

// DevKey is the i-th dev account's key.
func DevKey(i int) *ecdsa.PrivateKey {
	k, err := crypto.ToECDSA(crypto.Keccak256([]byte("aixblock dev account " + strconv.Itoa(i))))
	if err != nil {
		panic(err) // a keccak output is a valid key but for odds of 2^-128
	}
	return k
}

// DevAddresses are the contract addresses of a dev chain made before
// deterministic deployment: the deployer (dev account 0) created the
// token, then the escrow, as its first transactions. Newer dev chains have
// them at TestTokenAddress and EscrowAddress.
func DevAddresses() (token, escrow common.Address) {
	d := crypto.PubkeyToAddress(DevKey(0).PublicKey)
	return crypto.CreateAddress(d, 0), crypto.CreateAddress(d, 1)
}

var gethLogOnce sync.Once

// StartDevChain starts the chain, deploys the contracts and funds the
// accounts.
func StartDevChain(ctx context.Context, cfg DevChainConfig) (*DevChain, error) {
	if err := cfg.withDefaults(); err != nil {
		return nil, err
	}
	gethLogOnce.Do(func() {
		h := gethlog.DiscardHandler()
		if cfg.Logger != nil {
			h = errorsOnly{cfg.Logger.With("component", "devchain").Handler()}
		}
		gethlog.SetDefault(gethlog.NewLogger(h))
	})
	info, keys, alloc := devAccounts(cfg)
	// Before the stack makes its files in the data directory.
	salt, err := genesisSalt(cfg.DataDir)
	if err != nil {
		return nil, err
	}
	stack, beacon, backend, err := newDevStack(cfg, alloc, salt)
	if err != nil {
		return nil, err
	}
	d := &DevChain{stack: stack, beacon: beacon, eth: backend, client: ethclient.NewClient(stack.Attach()), stop: make(chan struct{})}
	if cfg.HTTP != "" {
		info.RPCURL = stack.HTTPEndpoint()
	}
	id, err := d.setUp(ctx, &info, keys[0], cfg.Fund)
	if err != nil {
		d.Close()
		return nil, err
	}
	d.Info = info
	if cfg.IdleBlock > 0 {
		go d.tick(cfg.IdleBlock, id)
	}
	return d, nil
}

func (cfg *DevChainConfig) withDefaults() error {
	if cfg.Accounts == 0 {
		cfg.Accounts = 4
	}
	if cfg.Accounts < 1 || cfg.Accounts > 1000 {
		return fmt.Errorf("devchain: accounts %d: want 1 to 1000", cfg.Accounts)
	}
	if cfg.ChallengePeriod == 0 {
		cfg.ChallengePeriod = 10 * time.Minute
	}
	if cfg.ChallengePeriod < time.Second {
		return fmt.Errorf("devchain: challenge period %s: want at least 1s", cfg.ChallengePeriod)
	}
	if cfg.IdleBlock == 0 {
		cfg.IdleBlock = 2 * time.Second
	}
	return nil
}

// devAccounts makes the dev accounts and the genesis allocation: every
// dev account, every address of cfg.Fund and the clock account get
// DevCoin.
func devAccounts(cfg DevChainConfig) (DevChainInfo, []*ecdsa.PrivateKey, types.GenesisAlloc) {
	info := DevChainInfo{ChallengePeriodS: uint64(cfg.ChallengePeriod / time.Second), Funded: cfg.Fund}
	alloc := core.SystemContractAllocs()
	var keys []*ecdsa.PrivateKey
	for i := 0; i < cfg.Accounts; i++ {
		k := DevKey(i)
		keys = append(keys, k)
		a := crypto.PubkeyToAddress(k.PublicKey)
		info.Accounts = append(info.Accounts, DevAccount{Address: a, PrivateKey: hex.EncodeToString(crypto.FromECDSA(k))})
		alloc[a] = types.Account{Balance: DevCoin}
	}
	for _, a := range cfg.Fund {
		alloc[a] = types.Account{Balance: DevCoin}
	}
	alloc[crypto.PubkeyToAddress(clockKey().PublicKey)] = types.Account{Balance: DevCoin}
	return info, keys, alloc
}

// devNodeConfig is the go-ethereum node of a dev chain: no peers, no IPC,
// JSON-RPC over HTTP only when cfg.HTTP is set.
func devNodeConfig(cfg DevChainConfig) (*node.Config, error) {
	nodeConf := node.DefaultConfig
	nodeConf.DataDir = cfg.DataDir
	nodeConf.P2P = p2p.Config{NoDiscovery: true, MaxPeers: 0} // no listener: a private chain
	nodeConf.IPCPath = ""
	nodeConf.AuthPort = 0
	if cfg.HTTP != "" {
		host, port, err := net.SplitHostPort(cfg.HTTP)
		if err != nil {
			return nil, fmt.Errorf("devchain: http address %q: %w", cfg.HTTP, err)
		}
		p, err := strconv.Atoi(port)
		if err != nil || p < 0 || p > 65535 {
			return nil, fmt.Errorf("devchain: http address %q: bad port", cfg.HTTP)
		}
		nodeConf.HTTPHost, nodeConf.HTTPPort = host, p
		nodeConf.HTTPModules = []string{"eth", "net", "web3", "dev"}
		nodeConf.HTTPVirtualHosts = []string{"localhost"}
	}
	return &nodeConf, nil
}

// devEthConfig is the dev chain's eth service: genesis with alloc and
// salt, small caches, every state on disk.
func devEthConfig(alloc types.GenesisAlloc, salt []byte) *ethconfig.Config {
	ethConf := ethconfig.Defaults
	ethConf.Genesis = &core.Genesis{
		Config:    DevChainParams(),
		GasLimit:  ethconfig.Defaults.Miner.GasCeil,
		Alloc:     alloc,
		ExtraData: salt,
	}
	ethConf.SyncMode = ethconfig.FullSync
	ethConf.TxPool.NoLocals = true
	// A dev chain is small: go-ethereum's mainnet-sized caches would more
	// than triple a daemon's memory.
	ethConf.DatabaseCache, ethConf.TrieCleanCache, ethConf.TrieDirtyCache, ethConf.SnapshotCache = 16, 8, 8, 0
	// Every block's state goes to disk as it is sealed (archive mode, hash
	// scheme): a daemon killed with SIGKILL must find its chain whole on
	// the next start, and a dev chain is small enough to keep it all.
	ethConf.NoPruning = true
	ethConf.StateScheme = rawdb.HashScheme
	return &ethConf
}

// newDevStack starts the node with its eth service and simulated beacon.
func newDevStack(cfg DevChainConfig, alloc types.GenesisAlloc, salt []byte) (*node.Node, *catalyst.SimulatedBeacon, *eth.Ethereum, error) {
	nodeConf, err := devNodeConfig(cfg)
	if err != nil {
		return nil, nil, nil, err
	}
	stack, err := node.New(nodeConf)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("devchain: %w", err)
	}
	backend, err := eth.New(stack, devEthConfig(alloc, salt))
	if err != nil {
		stack.Close()
		return nil, nil, nil, fmt.Errorf("devchain: %w", err)
	}
	fs := filters.NewFilterSystem(backend.APIBackend, filters.Config{})
	stack.RegisterAPIs([]rpc.API{{Namespace: "eth", Service: filters.NewFilterAPI(fs)}})
	beacon, err := catalyst.NewSimulatedBeacon(0, common.Address{}, backend)
	if err != nil {
		stack.Close()
		return nil, nil, nil, fmt.Errorf("devchain: beacon: %w", err)
	}
	// Registering the dev API starts on-demand sealing, as geth --dev does.
	catalyst.RegisterSimulatedBeaconAPIs(stack, beacon)
	stack.RegisterLifecycle(beacon)
	if err := stack.Start(); err != nil {
		stack.Close()
		return nil, nil, nil, fmt.Errorf("devchain: start: %w", err)
	}
	return stack, beacon, backend, nil
}

// setUp reads the chain's ID into info, finds the contracts' addresses,
// deploys them where missing and funds the accounts and fund with
// tokens; it returns the chain ID.
func (d *DevChain) setUp(ctx context.Context, info *DevChainInfo, deployer *ecdsa.PrivateKey, fund []common.Address) (*big.Int, error) {
	id, err := d.client.ChainID(ctx)
	if err != nil {
		return nil, fmt.Errorf("devchain: %w", err)
	}
	info.ChainID = id.Uint64()
	if info.Token, info.Escrow, err = devChainAddresses(ctx, d.client, info.ChallengePeriodS); err != nil {
		return nil, err
	}
	if err := d.deploy(ctx, deployer, *info, append(addrs(info.Accounts), fund...)); err != nil {
		return nil, err
	}
	return id, nil
}

func addrs(as []DevAccount) []common.Address {
	out := make([]common.Address, len(as))
	for i, a := range as {
		out[i] = a.Address
	}
	return out
}

// deploy puts the token and the escrow at their fixed addresses (unless a
// chain kept on disk has them already) and mints tokens for fund.
func (d *DevChain) deploy(ctx context.Context, key *ecdsa.PrivateKey, info DevChainInfo, fund []common.Address) error {
	code, err := d.client.CodeAt(ctx, info.Escrow, nil)
	if err != nil {
		return fmt.Errorf("devchain: %w", err)
	}
	opts := bind.NewKeyedTransactor(key, new(big.Int).SetUint64(info.ChainID))
	opts.Context = ctx
	tok := contracts.NewTestToken()
	if len(code) == 0 {
		if err := devChainDeploy(ctx, d.client, key, info); err != nil {
			return err
		}
	}
	// Nonces are counted here: asking the pool for each one races with the
	// block that seals the previous transaction. The first is the higher of
	// the head's and the pool's: a receipt can be served before the head
	// moves to its block, and then the head's nonce is one behind (seen as
	// "replacement transaction underpriced" on the first mint).
	from := crypto.PubkeyToAddress(key.PublicKey)
	nonce, err := d.client.NonceAt(ctx, from, nil)
	if err != nil {
		return fmt.Errorf("devchain: %w", err)
	}
	pending, err := d.client.PendingNonceAt(ctx, from)
	if err != nil {
		return fmt.Errorf("devchain: %w", err)
	}
	nonce = max(nonce, pending)
	t := tok.Instance(d.client, info.Token)
	var last *types.Transaction
	for _, a := range fund {
		bal, err := bind.Call(t, &bind.CallOpts{Context: ctx}, tok.PackBalanceOf(a), tok.UnpackBalanceOf)
		if err != nil {
			return fmt.Errorf("devchain: %w", err)
		}
		if bal.Sign() > 0 {
			continue
		}
		opts.Nonce = new(big.Int).SetUint64(nonce)
		nonce++
		if last, err = bind.Transact(t, opts, tok.PackMint(a, DevToken)); err != nil {
			return fmt.Errorf("devchain: mint: %w", err)
		}
	}
	if last != nil {
		if err := waitMined(ctx, d.client, last.Hash()); err != nil {
			return fmt.Errorf("devchain: mint: %w", err)
		}
	}
	return nil
}

// waitMined polls for the receipt more often than bind.WaitMined (once a
// second): blocks come at once here, and start-up waits on them.
func waitMined(ctx context.Context, b bind.DeployBackend, h common.Hash) error {
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	for {
		if r, err := b.TransactionReceipt(ctx, h); err == nil && r != nil {
			if r.Status != types.ReceiptStatusSuccessful {
				return fmt.Errorf("transaction %s reverted", h)
			}
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
}

// Client is an in-process JSON-RPC client of the chain.
func (d *DevChain) Client() *ethclient.Client { return d.client }

// AdjustTime seals a block dt later than the last one, so a challenge
// period can pass without waiting.
func (d *DevChain) AdjustTime(dt time.Duration) error { return d.beacon.AdjustTime(dt) }

// Close stops the chain.
func (d *DevChain) Close() error {
	var err error
	d.once.Do(func() {
		close(d.stop)
		d.quiesce(5 * time.Second)
		d.client.Close()
		err = d.stack.Close()
	})
	return err
}

// quiesce keeps geth's on-demand sealer off a closing chain. A
// transaction that arrives makes geth's own goroutine seal a block, and
// nothing waits for that goroutine: if the stack closes under it, it
// panics in sealBlock. So the pool first refuses every transaction (a tip
// no one pays) and drops those it holds, then Close waits, up to limit,
// for the head to stay put with nothing executable left.
func (d *DevChain) quiesce(limit time.Duration) {
	pool := d.eth.TxPool()
	pool.SetGasTip(new(big.Int).Lsh(big.NewInt(1), 200))
	head := d.eth.BlockChain().CurrentBlock().Hash()
	for deadline := time.Now().Add(limit); time.Now().Before(deadline); {
		time.Sleep(50 * time.Millisecond)
		executable, _ := pool.Stats()
		now := d.eth.BlockChain().CurrentBlock().Hash()
		if executable == 0 && now == head {
			return
		}
		head = now
	}
}

// errorsOnly passes go-ethereum's errors on and drops the rest: its
// warnings on a dev chain are start-up chatter ("head block is not
// reachable" on a new chain, "transaction indexing is in progress").
type errorsOnly struct{ h slog.Handler }

func (e errorsOnly) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= slog.LevelError && e.h.Enabled(ctx, l)
}
func (e errorsOnly) Handle(ctx context.Context, r slog.Record) error { return e.h.Handle(ctx, r) }
func (e errorsOnly) WithAttrs(as []slog.Attr) slog.Handler           { return errorsOnly{e.h.WithAttrs(as)} }
func (e errorsOnly) WithGroup(name string) slog.Handler              { return errorsOnly{e.h.WithGroup(name)} }

// genesisSalt makes every dev chain's genesis its own. Dev chains share
// the chain ID and, deployed by the same key, the contract addresses; two
// nodes each on an embedded chain of its own would otherwise look as if
// they paid on one chain, and a deal between them would fail only when the
// provider finds an empty channel. With a salt in the genesis block, the
// genesis hash tells the chains apart. The salt is kept beside the chain
// (a chain made before salts keeps its unsalted genesis).
func genesisSalt(dataDir string) ([]byte, error) {
	fresh := func() []byte {
		b := make([]byte, 32)
		rand.Read(b)
		return b
	}
	if dataDir == "" {
		return fresh(), nil
	}
	p := filepath.Join(dataDir, "genesis-salt")
	if b, err := os.ReadFile(p); err == nil {
		return hex.DecodeString(strings.TrimSpace(string(b)))
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("devchain: %w", err)
	}
	if ents, err := os.ReadDir(dataDir); err == nil && len(ents) > 0 {
		return nil, nil // a chain from before salts
	}
	salt := fresh()
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return nil, fmt.Errorf("devchain: %w", err)
	}
	if err := os.WriteFile(p, []byte(hex.EncodeToString(salt)+"\n"), 0o600); err != nil {
		return nil, fmt.Errorf("devchain: %w", err)
	}
	return salt, nil
}
