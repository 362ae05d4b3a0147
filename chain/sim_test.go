package chain

import (
	"context"
	"crypto/ecdsa"
	"math/big"
	"testing"
	"time"

	"github.com/aixblock/aixblock/contracts"
	"github.com/ethereum/go-ethereum/accounts/abi/bind/v2"
	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/core/types"
	"github.com/ethereum/go-ethereum/crypto"
	"github.com/ethereum/go-ethereum/eth/ethconfig"
	"github.com/ethereum/go-ethereum/ethclient/simulated"
	"github.com/ethereum/go-ethereum/node"
)

const testChallenge = 3600 // seconds

// mining wraps the simulated backend so that every accepted transaction is
// sealed into a block at once, as the dev chain does.
type mining struct {
	simulated.Client
	sim *simulated.Backend
}

func (m mining) SendTransaction(ctx context.Context, tx *types.Transaction) error {
	if err := m.Client.SendTransaction(ctx, tx); err != nil {
		return err
	}
	m.sim.Commit()
	return nil
}

// simEnv is a simulated chain with the token and escrow deployed, and
// clients for a payer, a payee and a third party, all funded.
type simEnv struct {
	t                      *testing.T
	sim                    *simulated.Backend
	b                      mining
	token, escrow          common.Address
	payer, payee, other    *Client
	payerK, payeeK, otherK *ecdsa.PrivateKey
	esc                    *contracts.Escrow
}

func newSim(t *testing.T, opts ...func(*simEnvOpts)) *simEnv {
	t.Helper()
	o := simEnvOpts{}
	for _, f := range opts {
		f(&o)
	}
	alloc := types.GenesisAlloc{}
	for i := 0; i < 4; i++ {
		alloc[crypto.PubkeyToAddress(DevKey(i).PublicKey)] = types.Account{Balance: DevCoin}
	}
	sim := simulated.NewBackend(alloc, append([]func(*node.Config, *ethconfig.Config){
		func(_ *node.Config, ec *ethconfig.Config) { ec.Genesis.Config = DevChainParams() },
	}, o.backend...)...)
	t.Cleanup(func() { sim.Close() })
	e := &simEnv{t: t, sim: sim, b: mining{sim.Client(), sim}, esc: contracts.NewEscrow()}
	deployer := bind.NewKeyedTransactor(DevKey(0), big.NewInt(1337))
	var err error
	var tx *types.Transaction
	if e.token, tx, err = bind.DeployContract(deployer, common.FromHex(contracts.TestTokenMetaData.Bin), e.b, nil); err != nil {
		t.Fatal(err)
	}
	mustMined(t, e.b, tx)
	if e.escrow, tx, err = bind.DeployContract(deployer, common.FromHex(contracts.EscrowMetaData.Bin), e.b, e.esc.PackConstructor(testChallenge)); err != nil {
		t.Fatal(err)
	}
	mustMined(t, e.b, tx)
	e.payerK, e.payeeK, e.otherK = DevKey(1), DevKey(2), DevKey(3)
	tok := contracts.NewTestToken()
	for _, k := range []*ecdsa.PrivateKey{e.payerK, e.otherK} {
		tx, err := bind.Transact(tok.Instance(e.b, e.token), deployer, tok.PackMint(crypto.PubkeyToAddress(k.PublicKey), DevToken))
		if err != nil {
			t.Fatal(err)
		}
		mustMined(t, e.b, tx)
	}
	cfg := Config{Escrow: e.escrow, Token: e.token, Poll: time.Millisecond, BumpAfter: o.bumpAfter}
	e.payer = e.client(e.payerK, cfg, o.wrap)
	e.payee = e.client(e.payeeK, cfg, o.wrap)
	e.other = e.client(e.otherK, cfg, o.wrap)
	return e
}

type simEnvOpts struct {
	backend   []func(*node.Config, *ethconfig.Config)
	bumpAfter time.Duration
	wrap      func(Backend) Backend
}

func (e *simEnv) client(k *ecdsa.PrivateKey, cfg Config, wrap func(Backend) Backend) *Client {
	e.t.Helper()
	w := &Wallet{addr: crypto.PubkeyToAddress(k.PublicKey), key: k}
	var b Backend = e.b
	if wrap != nil {
		b = wrap(b)
	}
	c, err := NewClient(context.Background(), b, w, cfg)
	if err != nil {
		e.t.Fatal(err)
	}
	return c
}

func mustMined(t *testing.T, b bind.DeployBackend, tx *types.Transaction) *types.Receipt {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	r, err := bind.WaitMined(ctx, b, tx.Hash())
	if err != nil {
		t.Fatal(err)
	}
	if r.Status != types.ReceiptStatusSuccessful {
		t.Fatalf("tx %s reverted", tx.Hash())
	}
	return r
}

// channel reads the payer→payee channel in token.
func (e *simEnv) channel(token common.Address) Channel {
	e.t.Helper()
	ch, err := e.payer.Channel(context.Background(), e.payer.Address(), e.payee.Address(), token)
	if err != nil {
		e.t.Fatal(err)
	}
	return ch
}

// voucher is the payer's signed voucher to the payee.
func (e *simEnv) voucher(token common.Address, amount int64) *Voucher {
	e.t.Helper()
	v, err := e.payer.SignVoucher(e.payee.Address(), token, big.NewInt(amount))
	if err != nil {
		e.t.Fatal(err)
	}
	return v
}

// rawRedeem sends redeem straight to the contract, skipping the client's
// own checks, as an attacker would.
func (e *simEnv) rawRedeem(from *Client, v *Voucher) error {
	_, err := from.tx.send(context.Background(), "redeem", e.escrow, nil,
		e.esc.PackRedeem(v.Payer, v.Token, v.CumulativeAmount.Big(), v.Signature))
	return err
}

func gasCost(r *types.Receipt) *big.Int {
	return new(big.Int).Mul(new(big.Int).SetUint64(r.GasUsed), r.EffectiveGasPrice)
}

// deploy deploys a test contract from dev account 0, which it returns as a
// transactor for further calls.
func (e *simEnv) deploy(bin string) (*bind.TransactOpts, common.Address) {
	e.t.Helper()
	deployer := bind.NewKeyedTransactor(DevKey(0), big.NewInt(1337))
	addr, tx, err := bind.DeployContract(deployer, common.FromHex(bin), e.b, nil)
	if err != nil {
		e.t.Fatal(err)
	}
	mustMined(e.t, e.b, tx)
	return deployer, addr
}
