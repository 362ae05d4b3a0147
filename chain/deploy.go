package chain

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"strings"
	"time"

	"github.com/aixblock/aixblock/contracts"
	"github.com/ethereum/go-ethereum/accounts/abi"
	"github.com/ethereum/go-ethereum/accounts/abi/bind/v2"
	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/core/types"
	"github.com/ethereum/go-ethereum/crypto"
)

// The standard deterministic-deployment proxy
// (github.com/Arachnid/deterministic-deployment-proxy), present on most EVM
// chains at one address. Called with 32 bytes of salt followed by init
// code, it CREATE2s the contract and returns its address, so a contract's
// address depends only on the proxy, the salt and the init code: the same
// on every chain.
//
// Where it is missing, anyone can install it with its deployment
// transaction: a pre-EIP-155 transaction (valid on every chain) signed by a
// key nobody holds (its signature is made up, r = s = 0x2222...), whose
// sender is recovered from it. That one-time sender needs 0.01 ETH (100000
// gas at 100 gwei) and must never have sent a transaction. The test checks
// that the sender recovers to deployProxySigner, that its first contract
// is DeployProxy, and that the transaction leaves deployProxyCode there.
var (
	DeployProxy       = common.HexToAddress("0x4e59b44847b379578588920cA78FbF26c0B4956C")
	deployProxySigner = common.HexToAddress("0x3fAB184622Dc19b6109349B94811493BF2a45362")
	deployProxyTx     = common.FromHex("0xf8a58085174876e800830186a08080b853604580600e600039806000f350fe7fffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffe03601600081602082378035828234f58015156039578182fd5b8082525050506014600cf31ba02222222222222222222222222222222222222222222222222222222222222222a02222222222222222222222222222222222222222222222222222222222222222")
	deployProxyCode   = common.FromHex("0x7fffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffe03601600081602082378035828234f58015156039578182fd5b8082525050506014600cf3")
)

// Salts of our contracts, fixed per version: a new version of a contract
// that must not share an address with the old gets a new salt.
var (
	EscrowSalt    = crypto.Keccak256Hash([]byte("aixblock.escrow.v1"))
	TestTokenSalt = crypto.Keccak256Hash([]byte("aixblock.testtoken.v1"))
)

// ErrUnprotectedRefused: the node would not take the proxy's pre-EIP-155
// deployment transaction over RPC.
var ErrUnprotectedRefused = errors.New("the RPC refuses pre-EIP-155 (unprotected) transactions")

// ErrNoEscrow: there is no contract at the escrow's address.
var ErrNoEscrow = errors.New("no contract at the escrow address")

// Create2Address is where the proxy puts initCode deployed with salt.
func Create2Address(salt common.Hash, initCode []byte) common.Address {
	return crypto.CreateAddress2(DeployProxy, salt, crypto.Keccak256(initCode))
}

// EscrowInitCode is the escrow's creation code with its constructor
// argument, the challenge period in seconds.
func EscrowInitCode(challengePeriodS uint64) []byte {
	return append(common.FromHex(contracts.EscrowMetaData.Bin), contracts.NewEscrow().PackConstructor(challengePeriodS)...)
}

// EscrowAddress is the escrow's deterministic address for a challenge
// period (whole seconds), on every chain.
func EscrowAddress(challengePeriod time.Duration) common.Address {
	return Create2Address(EscrowSalt, EscrowInitCode(uint64(challengePeriod/time.Second)))
}

// TestTokenAddress is the test token's deterministic address.
func TestTokenAddress() common.Address {
	return Create2Address(TestTokenSalt, common.FromHex(contracts.TestTokenMetaData.Bin))
}

// DeployConfig configures Deploy.
type DeployConfig struct {
	// ChallengePeriod of the escrow, whole seconds; zero means the table's
	// period for the chain's ID (Networks), else PublicChallengePeriod.
	ChallengePeriod time.Duration
	// TestToken also deploys the test token (anyone can mint it). Deploy
	// refuses it on a chain the table marks as a mainnet.
	TestToken bool
	// Confirmations each transaction waits for; zero means 1.
	Confirmations uint64
	// Poll is how often receipts are checked; zero means 200 ms.
	Poll time.Duration
	// Logger; nil means slog.Default().
	Logger *slog.Logger
}

// Deployed is one contract that Deploy found or created.
type Deployed struct {
	Address common.Address `json:"address"`
	// Found: it was there already, and nothing was sent for it.
	Found bool `json:"found"`
	// Tx, Block and GasUsed are the deployment's, when Deploy made it.
	Tx      string `json:"tx,omitempty"`
	Block   uint64 `json:"block,omitempty"`
	GasUsed uint64 `json:"gas_used,omitempty"`
}

// Deployment is what Deploy did.
type Deployment struct {
	ChainID          uint64         `json:"chain_id"`
	Network          string         `json:"network,omitempty"` // its name in the table, if there
	Deployer         common.Address `json:"deployer"`
	Proxy            Deployed       `json:"proxy"`
	Escrow           Deployed       `json:"escrow"`
	ChallengePeriodS uint64         `json:"challenge_period_s"`
	Token            *Deployed      `json:"token,omitempty"`
	TokenSymbol      string         `json:"token_symbol,omitempty"`
	TokenDecimals    uint8          `json:"token_decimals,omitempty"`
}

// Deploy puts the escrow (and with cfg.TestToken the test token) at their
// deterministic addresses through the deterministic-deployment proxy,
// installing the proxy first where the chain lacks it. It is idempotent: a
// contract already at its address is checked, not deployed again. key pays
// for what is sent.
func Deploy(ctx context.Context, b Backend, key *ecdsa.PrivateKey, cfg DeployConfig) (*Deployment, error) {
	if cfg.Confirmations == 0 {
		cfg.Confirmations = 1
	}
	if cfg.Poll == 0 {
		cfg.Poll = 200 * time.Millisecond
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	id, err := b.ChainID(ctx)
	if err != nil {
		return nil, fmt.Errorf("deploy: chain id: %w", err)
	}
	net, known := NetworkByChainID(id.Uint64())
	if cfg.ChallengePeriod == 0 {
		cfg.ChallengePeriod = PublicChallengePeriod
		if known {
			cfg.ChallengePeriod = net.ChallengePeriod
		}
	}
	if cfg.ChallengePeriod < time.Second || cfg.ChallengePeriod%time.Second != 0 {
		return nil, fmt.Errorf("deploy: challenge period %s: want whole seconds, at least 1s", cfg.ChallengePeriod)
	}
	if cfg.TestToken && known && net.Mainnet {
		return nil, fmt.Errorf("deploy: chain %s is a mainnet: no test token there (anyone could mint it)", chainName(id.Uint64()))
	}
	w := &Wallet{addr: crypto.PubkeyToAddress(key.PublicKey), key: key}
	esc, tok := contracts.NewEscrow(), contracts.NewTestToken()
	eabi, tabi := esc.GetABI(), tok.GetABI()
	log := cfg.Logger.With("component", "chain")
	d := &deployer{b: b, chainID: id, poll: cfg.Poll, log: log, s: &sender{b: b, w: w, chainID: id, bumpAfter: 30 * time.Second,
		poll: cfg.Poll, confirm: cfg.Confirmations, errABIs: []*abi.ABI{&eabi, &tabi}, log: log}}
	out := &Deployment{ChainID: id.Uint64(), Deployer: w.addr, ChallengePeriodS: uint64(cfg.ChallengePeriod / time.Second)}
	if known {
		out.Network = net.Name
	}
	if out.Proxy, err = d.proxy(ctx); err != nil {
		return out, fmt.Errorf("deploy: proxy: %w", err)
	}
	if cfg.TestToken {
		t, err := d.create2(ctx, "test token", TestTokenSalt, common.FromHex(contracts.TestTokenMetaData.Bin))
		if err != nil {
			return out, fmt.Errorf("deploy: %w", err)
		}
		out.Token = &t
	}
	if out.Escrow, err = d.create2(ctx, "escrow", EscrowSalt, EscrowInitCode(out.ChallengePeriodS)); err != nil {
		return out, fmt.Errorf("deploy: %w", err)
	}
	if err := d.waitHead(ctx); err != nil {
		return out, fmt.Errorf("deploy: %w", err)
	}
	if t := out.Token; t != nil {
		if out.TokenSymbol, out.TokenDecimals, err = ReadToken(ctx, b, t.Address); err != nil {
			return out, fmt.Errorf("deploy: test token at %s: %w", t.Address, err)
		}
		if out.TokenSymbol != "tUSD" || out.TokenDecimals != 6 {
			return out, fmt.Errorf("deploy: the contract at the test token's address %s is %s with %d decimals, not tUSD with 6", t.Address, out.TokenSymbol, out.TokenDecimals)
		}
	}
	info, err := CheckEscrow(ctx, b, out.Escrow.Address)
	if err != nil {
		return out, fmt.Errorf("deploy: %w", err)
	}
	if info.ChallengePeriodS != out.ChallengePeriodS {
		return out, fmt.Errorf("deploy: the escrow at %s has a challenge period of %ds, want %ds", out.Escrow.Address, info.ChallengePeriodS, out.ChallengePeriodS)
	}
	return out, nil
}

type deployer struct {
	b       Backend
	s       *sender
	chainID *big.Int
	poll    time.Duration
	log     *slog.Logger
	last    uint64 // the block of the last transaction sent
}

// waitHead waits until the head has the last transaction's block: a node
// may serve a receipt before its head moves there, and reads of the latest
// state would not see the contract yet.
func (d *deployer) waitHead(ctx context.Context) error {
	t := time.NewTicker(d.poll)
	defer t.Stop()
	for {
		n, err := d.b.BlockNumber(ctx)
		if err == nil && n >= d.last {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for block %d: %w", d.last, ctx.Err())
		case <-t.C:
		}
	}
}

// proxy finds the deterministic-deployment proxy or installs it.
func (d *deployer) proxy(ctx context.Context) (Deployed, error) {
	out := Deployed{Address: DeployProxy}
	code, err := d.b.CodeAt(ctx, DeployProxy, nil)
	if err != nil {
		return out, err
	}
	if len(code) > 0 {
		if !bytes.Equal(code, deployProxyCode) {
			return out, fmt.Errorf("%s holds other code than the deterministic-deployment proxy on chain %s: this chain cannot have our escrow at its usual address", DeployProxy, chainName(d.chainID.Uint64()))
		}
		out.Found = true
		return out, nil
	}
	nonce, err := d.b.PendingNonceAt(ctx, deployProxySigner)
	if err != nil {
		return out, err
	}
	if nonce > 0 {
		return out, fmt.Errorf("the proxy's one-time deployer %s has sent %d transaction(s) on chain %s, yet the proxy is not at %s: it can no longer be installed here", deployProxySigner, nonce, chainName(d.chainID.Uint64()), DeployProxy)
	}
	tx := new(types.Transaction)
	if err := tx.UnmarshalBinary(deployProxyTx); err != nil {
		return out, err
	}
	head, err := d.b.HeaderByNumber(ctx, nil)
	if err != nil {
		return out, err
	}
	if head.BaseFee != nil && head.BaseFee.Cmp(tx.GasPrice()) > 0 {
		return out, fmt.Errorf("the chain's base fee (%s gwei) is above the %s gwei the proxy's presigned deployment pays: try again when fees are lower",
			FormatUnits(head.BaseFee, 9), FormatUnits(tx.GasPrice(), 9))
	}
	// Fund the one-time deployer with what its transaction can cost.
	need := new(big.Int).Mul(tx.GasPrice(), new(big.Int).SetUint64(tx.Gas()))
	bal, err := d.b.BalanceAt(ctx, deployProxySigner, nil)
	if err != nil {
		return out, err
	}
	if bal.Cmp(need) < 0 {
		short := new(big.Int).Sub(need, bal)
		d.log.Info("funding the deterministic-deployment proxy's one-time deployer", "address", deployProxySigner, "eth", FormatUnits(short, 18))
		if _, err := d.s.send(ctx, "fund the proxy's deployer", deployProxySigner, short, nil); err != nil {
			return out, d.funds(ctx, err)
		}
	}
	if err := d.b.SendTransaction(ctx, tx); err != nil && !isAlreadyKnown(err) {
		if s := strings.ToLower(err.Error()); strings.Contains(s, "eip-155") || strings.Contains(s, "eip155") || strings.Contains(s, "unprotected") || strings.Contains(s, "replay") {
			return out, fmt.Errorf("%w (%v): the deterministic-deployment proxy %s, which puts the escrow at the same address on every chain, "+
				"can only be installed by its presigned pre-EIP-155 transaction; let this node accept it once (geth: --rpc.allow-unprotected-txs; "+
				"anvil and the embedded dev chain have the proxy already), or send the transaction through a node that does, then run chain deploy again; "+
				"the one-time deployer %s is funded already", ErrUnprotectedRefused, err, DeployProxy, deployProxySigner)
		}
		return out, fmt.Errorf("send the proxy's deployment transaction: %w", err)
	}
	d.log.Info("installing the deterministic-deployment proxy", "tx", tx.Hash(), "address", DeployProxy)
	r, err := d.wait(ctx, tx.Hash())
	if err != nil {
		return out, fmt.Errorf("proxy deployment %s: %w", tx.Hash(), err)
	}
	out.Tx, out.Block, out.GasUsed = tx.Hash().Hex(), r.BlockNumber.Uint64(), r.GasUsed
	d.last = max(d.last, r.BlockNumber.Uint64())
	if code, err = d.b.CodeAt(ctx, DeployProxy, r.BlockNumber); err != nil {
		return out, err
	}
	if !bytes.Equal(code, deployProxyCode) {
		return out, fmt.Errorf("the proxy's deployment transaction %s left %d bytes of other code at %s", tx.Hash(), len(code), DeployProxy)
	}
	return out, nil
}

// create2 deploys initCode with salt through the proxy, unless it is there.
func (d *deployer) create2(ctx context.Context, what string, salt common.Hash, initCode []byte) (Deployed, error) {
	addr := Create2Address(salt, initCode)
	out := Deployed{Address: addr}
	code, err := d.b.CodeAt(ctx, addr, nil)
	if err != nil {
		return out, fmt.Errorf("%s: %w", what, err)
	}
	if len(code) > 0 {
		// The address commits to the init code (through the proxy, whose
		// code was checked), so what is there is what it deploys.
		out.Found = true
		return out, nil
	}
	data := append(salt.Bytes(), initCode...)
	r, err := d.s.send(ctx, "deploy "+what, DeployProxy, nil, data)
	if err != nil {
		return out, d.funds(ctx, err)
	}
	out.Tx, out.Block, out.GasUsed = r.TxHash.Hex(), r.BlockNumber.Uint64(), r.GasUsed
	d.last = max(d.last, r.BlockNumber.Uint64())
	if code, err = d.b.CodeAt(ctx, addr, r.BlockNumber); err != nil {
		return out, fmt.Errorf("%s: %w", what, err)
	}
	if len(code) == 0 {
		return out, fmt.Errorf("%s: transaction %s left no code at %s", what, r.TxHash, addr)
	}
	d.log.Info("deployed", "contract", what, "address", addr, "tx", r.TxHash, "gas_used", r.GasUsed)
	return out, nil
}

// funds says whose balance is short when a transaction could not pay.
func (d *deployer) funds(ctx context.Context, err error) error {
	if !strings.Contains(err.Error(), "insufficient funds") {
		return err
	}
	from := d.s.w.Address()
	bal, berr := d.b.BalanceAt(ctx, from, nil)
	if berr != nil {
		return err
	}
	return fmt.Errorf("%w: the deploying key %s holds %s ETH on chain %s; fund it and run again", err, from, FormatUnits(bal, 18), chainName(d.chainID.Uint64()))
}

// wait polls for a receipt.
func (d *deployer) wait(ctx context.Context, h common.Hash) (*types.Receipt, error) {
	t := time.NewTicker(d.poll)
	defer t.Stop()
	for {
		if r, err := d.b.TransactionReceipt(ctx, h); err == nil && r != nil {
			if r.Status != types.ReceiptStatusSuccessful {
				return r, fmt.Errorf("transaction %s reverted", h)
			}
			return r, nil
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-t.C:
		}
	}
}

// EscrowInfo is what an escrow says of itself.
type EscrowInfo struct {
	Address          common.Address `json:"address"`
	ChallengePeriodS uint64         `json:"challenge_period_s"`
	ChainID          uint64         `json:"chain_id"`
}

// CheckEscrow checks that addr holds our escrow, for this chain and this
// address (its EIP-712 domain, which vouchers are signed under, names
// both), and reads its challenge period. ErrNoEscrow when there is no code.
func CheckEscrow(ctx context.Context, b Backend, addr common.Address) (EscrowInfo, error) {
	out := EscrowInfo{Address: addr}
	id, err := b.ChainID(ctx)
	if err != nil {
		return out, fmt.Errorf("chain id: %w", err)
	}
	out.ChainID = id.Uint64()
	code, err := b.CodeAt(ctx, addr, nil)
	if err != nil {
		return out, fmt.Errorf("escrow code: %w", err)
	}
	if len(code) == 0 {
		return out, fmt.Errorf("escrow: %w %s on chain %s", ErrNoEscrow, addr, chainName(out.ChainID))
	}
	esc := contracts.NewEscrow()
	c := esc.Instance(b, addr)
	opts := &bind.CallOpts{Context: ctx}
	notOurs := func(why string) error {
		return fmt.Errorf("escrow: the contract at %s on chain %s is not an AIxBlock escrow (%s)", addr, chainName(out.ChainID), why)
	}
	dom, err := bind.Call(c, opts, esc.PackEip712Domain(), esc.UnpackEip712Domain)
	if err != nil {
		return out, notOurs("eip712Domain(): " + err.Error())
	}
	if dom.Name != "AIxBlock Escrow" || dom.Version != "1" {
		return out, notOurs(fmt.Sprintf("its EIP-712 domain is %q version %q", dom.Name, dom.Version))
	}
	if dom.ChainId == nil || dom.ChainId.Cmp(id) != 0 || dom.VerifyingContract != addr {
		return out, notOurs(fmt.Sprintf("its EIP-712 domain names chain %v and contract %s", dom.ChainId, dom.VerifyingContract))
	}
	if out.ChallengePeriodS, err = bind.Call(c, opts, esc.PackChallengePeriod(), esc.UnpackChallengePeriod); err != nil {
		return out, notOurs("challengePeriod(): " + err.Error())
	}
	return out, nil
}

// ChallengePeriod is the escrow's challenge period.
func (c *Client) ChallengePeriod(ctx context.Context) (time.Duration, error) {
	s, err := bind.Call(c.escrow, &bind.CallOpts{Context: ctx}, c.esc.PackChallengePeriod(), c.esc.UnpackChallengePeriod)
	if err != nil {
		return 0, fmt.Errorf("escrow challenge period: %w", err)
	}
	return time.Duration(s) * time.Second, nil
}

// ReadToken reads an ERC-20's symbol and decimals, failing where there is
// no contract.
func ReadToken(ctx context.Context, b Backend, token common.Address) (string, uint8, error) {
	code, err := b.CodeAt(ctx, token, nil)
	if err != nil {
		return "", 0, err
	}
	if len(code) == 0 {
		return "", 0, fmt.Errorf("no contract at %s", token)
	}
	erc := contracts.NewERC20()
	c := erc.Instance(b, token)
	opts := &bind.CallOpts{Context: ctx}
	sym, err := bind.Call(c, opts, erc.PackSymbol(), erc.UnpackSymbol)
	if err != nil {
		return "", 0, fmt.Errorf("symbol(): %w", err)
	}
	dec, err := bind.Call(c, opts, erc.PackDecimals(), erc.UnpackDecimals)
	if err != nil {
		return "", 0, fmt.Errorf("decimals(): %w", err)
	}
	return sym, dec, nil
}

// ChainCheck is what CheckChain found.
type ChainCheck struct {
	ChainID       uint64         `json:"chain_id"`
	Network       string         `json:"network,omitempty"`
	Escrow        EscrowInfo     `json:"escrow"`
	Token         common.Address `json:"token"`
	TokenSymbol   string         `json:"token_symbol"`
	TokenDecimals uint8          `json:"token_decimals"`
}

// CheckChain checks a chain before a node relies on it: the chain ID
// (when wantChainID is not zero), our escrow at escrow, and token (zero:
// the native coin) being an ERC-20. Each error names what is wrong.
func CheckChain(ctx context.Context, b Backend, wantChainID uint64, escrow, token common.Address) (ChainCheck, error) {
	var out ChainCheck
	id, err := b.ChainID(ctx)
	if err != nil {
		return out, fmt.Errorf("chain id: %w", err)
	}
	out.ChainID = id.Uint64()
	if n, ok := NetworkByChainID(out.ChainID); ok {
		out.Network = n.Name
	}
	if wantChainID != 0 && out.ChainID != wantChainID {
		return out, fmt.Errorf("chain id: the RPC serves chain %s, not %s: check the RPC URL", chainName(out.ChainID), chainName(wantChainID))
	}
	if out.Escrow, err = CheckEscrow(ctx, b, escrow); err != nil {
		return out, err
	}
	out.Token = token
	if token == NativeToken {
		out.TokenSymbol, out.TokenDecimals = "ETH", 18
		return out, nil
	}
	if out.TokenSymbol, out.TokenDecimals, err = ReadToken(ctx, b, token); err != nil {
		return out, fmt.Errorf("token %s on chain %s: %w", token, chainName(out.ChainID), err)
	}
	return out, nil
}

// FundConfig says what Fund sends.
type FundConfig struct {
	// To are the addresses to fund.
	To []common.Address
	// ETH is the native coin to send each, in wei; nil or zero sends none.
	ETH *big.Int
	// Token is a test token to mint from (anyone can mint it); Tokens is
	// how much each gets, in base units; nil or zero mints none.
	Token  common.Address
	Tokens *big.Int
	// Poll is how often receipts are checked; zero means 200 ms.
	Poll time.Duration
	// Logger; nil means slog.Default().
	Logger *slog.Logger
}

// Funded is one transaction Fund sent.
type Funded struct {
	To     common.Address `json:"to"`
	What   string         `json:"what"` // eth or mint
	Amount *Amount        `json:"amount"`
	Tx     string         `json:"tx"`
}

// Fund sends ETH from key and mints test tokens to each address, for dev
// and test networks (minting is refused on a chain the table marks as a
// mainnet, and fails on a token without a public mint).
func Fund(ctx context.Context, b Backend, key *ecdsa.PrivateKey, cfg FundConfig) ([]Funded, error) {
	if cfg.Poll == 0 {
		cfg.Poll = 200 * time.Millisecond
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	id, err := b.ChainID(ctx)
	if err != nil {
		return nil, fmt.Errorf("fund: chain id: %w", err)
	}
	minting := cfg.Tokens != nil && cfg.Tokens.Sign() > 0
	if n, ok := NetworkByChainID(id.Uint64()); ok && n.Mainnet && minting {
		return nil, fmt.Errorf("fund: chain %s is a mainnet: no test tokens to mint there", chainName(id.Uint64()))
	}
	if minting && cfg.Token == NativeToken {
		return nil, errors.New("fund: no token to mint from")
	}
	w := &Wallet{addr: crypto.PubkeyToAddress(key.PublicKey), key: key}
	tok := contracts.NewTestToken()
	tabi := tok.GetABI()
	s := &sender{b: b, w: w, chainID: id, bumpAfter: 30 * time.Second, poll: cfg.Poll, confirm: 1,
		errABIs: []*abi.ABI{&tabi}, log: cfg.Logger.With("component", "chain")}
	d := &deployer{b: b, s: s, chainID: id}
	var out []Funded
	for _, to := range cfg.To {
		if cfg.ETH != nil && cfg.ETH.Sign() > 0 {
			r, err := s.send(ctx, "send ETH to "+to.Hex(), to, cfg.ETH, nil)
			if err != nil {
				return out, fmt.Errorf("fund: %w", d.funds(ctx, err))
			}
			out = append(out, Funded{To: to, What: "eth", Amount: NewAmount(cfg.ETH), Tx: r.TxHash.Hex()})
		}
		if minting {
			r, err := s.send(ctx, "mint for "+to.Hex(), cfg.Token, nil, tok.PackMint(to, cfg.Tokens))
			if err != nil {
				return out, fmt.Errorf("fund: token %s (is it a test token, with a public mint?): %w", cfg.Token, d.funds(ctx, err))
			}
			out = append(out, Funded{To: to, What: "mint", Amount: NewAmount(cfg.Tokens), Tx: r.TxHash.Hex()})
		}
	}
	return out, nil
}

// DeployProxyAccount is the proxy as a genesis account, for a chain of
// one's own that should start with it. go-ethereum's system contract
// allocations (core.SystemContractAllocs, EIP-7997) have it already, so
// geth --dev, the simulated backend and the embedded dev chain do.
func DeployProxyAccount() types.Account {
	return types.Account{Code: common.CopyBytes(deployProxyCode), Nonce: 1, Balance: new(big.Int)}
}

// devChainAddresses are a dev chain's token and escrow: the deterministic
// ones, or on a chain kept from before deterministic deployment (its
// escrow at the legacy address), where dev account 0 created them.
func devChainAddresses(ctx context.Context, b Backend, challengePeriodS uint64) (token, escrow common.Address, err error) {
	lt, le := DevAddresses()
	code, err := b.CodeAt(ctx, le, nil)
	if err != nil {
		return lt, le, fmt.Errorf("devchain: %w", err)
	}
	if len(code) > 0 {
		return lt, le, nil
	}
	return TestTokenAddress(), EscrowAddress(time.Duration(challengePeriodS) * time.Second), nil
}

// devChainDeploy deploys a dev chain's contracts from dev account 0.
func devChainDeploy(ctx context.Context, b Backend, key *ecdsa.PrivateKey, info DevChainInfo) error {
	d, err := Deploy(ctx, b, key, DeployConfig{ChallengePeriod: time.Duration(info.ChallengePeriodS) * time.Second,
		TestToken: true, Poll: 10 * time.Millisecond, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		return fmt.Errorf("devchain: %w", err)
	}
	if d.Escrow.Address != info.Escrow || d.Token.Address != info.Token {
		return fmt.Errorf("devchain: contracts deployed at %s and %s, want %s and %s", d.Token.Address, d.Escrow.Address, info.Token, info.Escrow)
	}
	return nil
}
