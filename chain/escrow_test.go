package chain

import (
	"bytes"
	"context"
	"math/big"
	"testing"
	"time"

	"github.com/aixblock/aixblock/contracts/testcontracts"
	"github.com/ethereum/go-ethereum/accounts/abi/bind/v2"
	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/core/types"
	"github.com/ethereum/go-ethereum/crypto"
)

func TestLifecycle(t *testing.T) {
	for _, tc := range []struct {
		name   string
		native bool
	}{{"erc20", false}, {"native", true}} {
		t.Run(tc.name, func(t *testing.T) {
			l := &lifecycle{e: newSim(t), t: t, ctx: context.Background(), native: tc.native,
				payeeGas: new(big.Int), payerGas: new(big.Int)}
			l.token = l.e.token
			if tc.native {
				l.token = NativeToken
			}
			payeeBefore, _ := l.e.payee.Balance(l.ctx, l.token)
			payerBefore, _ := l.e.payer.Balance(l.ctx, l.token)
			l.depositAndRedeem()
			l.closeAndWithdraw()
			l.checkPaid(payeeBefore, payerBefore)
			l.oldVouchersAfterWithdraw()
		})
	}
}

// lifecycle is one channel's life in TestLifecycle, in the test token or
// the native coin, with the gas each side paid.
type lifecycle struct {
	e                  *simEnv
	t                  *testing.T
	ctx                context.Context
	token              common.Address
	native             bool
	payeeGas, payerGas *big.Int
}

// pay adds r's gas to who's and fails the test on err.
func (l *lifecycle) pay(who *big.Int, r *types.Receipt, err error) {
	l.t.Helper()
	if err != nil {
		l.t.Fatal(err)
	}
	who.Add(who, gasCost(r))
}

// depositAndRedeem deposits twice and redeems two cumulative vouchers.
func (l *lifecycle) depositAndRedeem() {
	t, e, ctx, token := l.t, l.e, l.ctx, l.token
	r, err := e.payer.Deposit(ctx, e.payee.Address(), token, big.NewInt(10))
	l.pay(l.payerGas, r, err)
	r, err = e.payer.Deposit(ctx, e.payee.Address(), token, big.NewInt(5))
	l.pay(l.payerGas, r, err)
	if ch := e.channel(token); ch.Deposited.Int64() != 15 || ch.Redeemed.Int64() != 0 || ch.ClosesAt != 0 {
		t.Fatalf("after deposits: %+v", ch)
	}
	for _, step := range []struct{ cum, paidTotal int64 }{{4, 4}, {9, 9}} {
		r, err := e.payee.Redeem(ctx, e.voucher(token, step.cum))
		l.pay(l.payeeGas, r, err)
		if ch := e.channel(token); ch.Redeemed.Int64() != step.paidTotal {
			t.Fatalf("after voucher %d: redeemed %s", step.cum, ch.Redeemed)
		}
	}
}

// closeAndWithdraw starts the close, redeems once more during the
// challenge period and withdraws after it.
func (l *lifecycle) closeAndWithdraw() {
	t, e, ctx, token := l.t, l.e, l.ctx, l.token
	r, err := e.payer.StartClose(ctx, e.payee.Address(), token)
	l.pay(l.payerGas, r, err)
	if ch := e.channel(token); ch.ClosesAt == 0 {
		t.Fatal("close did not start")
	}
	// The payee can still redeem during the challenge period.
	r, err = e.payee.Redeem(ctx, e.voucher(token, 12))
	l.pay(l.payeeGas, r, err)
	if _, err := e.payer.Withdraw(ctx, e.payee.Address(), token); !IsRevert(err, "ChallengePeriod") {
		t.Fatalf("withdraw during the challenge period: %v", err)
	}
	if err := e.sim.AdjustTime(testChallenge * time.Second); err != nil {
		t.Fatal(err)
	}
	r, err = e.payer.Withdraw(ctx, e.payee.Address(), token)
	l.pay(l.payerGas, r, err)
	if ch := e.channel(token); ch.Deposited.Int64() != 12 || ch.Redeemed.Int64() != 12 || ch.ClosesAt != 0 {
		t.Fatalf("after withdraw: %+v", ch)
	}
}

// checkPaid checks that the escrow is empty and that exactly 12 went
// from the payer to the payee, gas aside.
func (l *lifecycle) checkPaid(payeeBefore, payerBefore *big.Int) {
	t, e, ctx := l.t, l.e, l.ctx
	escrowBal, err := e.payer.BalanceOf(ctx, l.token, e.escrow)
	if err != nil {
		t.Fatal(err)
	}
	if got := escrowBal.Int64(); got != 0 {
		t.Fatalf("escrow still holds %d", got)
	}
	payeeAfter, _ := e.payee.Balance(ctx, l.token)
	payerAfter, _ := e.payer.Balance(ctx, l.token)
	if l.native { // the native balances also paid for gas
		payeeAfter.Add(payeeAfter, l.payeeGas)
		payerAfter.Add(payerAfter, l.payerGas)
	}
	if d := new(big.Int).Sub(payeeAfter, payeeBefore); d.Int64() != 12 {
		t.Fatalf("payee received %s, want 12", d)
	}
	if d := new(big.Int).Sub(payerBefore, payerAfter); d.Int64() != 12 {
		t.Fatalf("payer spent %s, want 12", d)
	}
}

// oldVouchersAfterWithdraw checks that after a withdraw, old vouchers
// never pay again, even after a new deposit.
func (l *lifecycle) oldVouchersAfterWithdraw() {
	t, e, ctx, token := l.t, l.e, l.ctx, l.token
	if err := e.rawRedeem(e.payee, e.voucher(token, 12)); !IsRevert(err, "NothingToRedeem") {
		t.Fatalf("old voucher after withdraw: %v", err)
	}
	if err := e.rawRedeem(e.payee, e.voucher(token, 15)); !IsRevert(err, "ExceedsDeposit") {
		t.Fatalf("voucher over the deposit after withdraw: %v", err)
	}
	if _, err := e.payer.Deposit(ctx, e.payee.Address(), token, big.NewInt(3)); err != nil {
		t.Fatal(err)
	}
	if err := e.rawRedeem(e.payee, e.voucher(token, 12)); !IsRevert(err, "NothingToRedeem") {
		t.Fatalf("old voucher after a new deposit: %v", err)
	}
	if _, err := e.payee.Redeem(ctx, e.voucher(token, 15)); err != nil {
		t.Fatalf("a new voucher after a new deposit: %v", err)
	}
}

func TestAttacks(t *testing.T) {
	e := newSim(t)
	ctx := context.Background()
	tok := e.token
	if _, err := e.payer.Deposit(ctx, e.payee.Address(), tok, big.NewInt(15)); err != nil {
		t.Fatal(err)
	}
	if _, err := e.payee.Redeem(ctx, e.voucher(tok, 9)); err != nil {
		t.Fatal(err)
	}
	for _, tc := range e.badVouchers(tok) {
		t.Run(tc.name, func(t *testing.T) {
			// The payee redeems for the payer→payee channel whatever the
			// voucher claims; only its amount and signature go on chain.
			v := *tc.v
			v.Payee = e.payee.Address()
			if err := e.rawRedeem(e.payee, &v); !IsRevert(err, tc.revert) {
				t.Fatalf("got %v, want revert %s", err, tc.revert)
			}
			// And the client refuses it before spending gas, where it can tell.
			if tc.revert == "BadSignature" {
				if _, err := e.payee.Redeem(ctx, &v); err == nil {
					t.Fatal("client accepted a bad voucher")
				}
			}
		})
	}
	if ch := e.channel(tok); ch.Redeemed.Int64() != 9 {
		t.Fatalf("attacks moved money: redeemed %s", ch.Redeemed)
	}
	for _, tc := range e.badCalls(tok) {
		t.Run(tc.name, func(t *testing.T) {
			if err := e.send(tc.from, tc.data, tc.value); !IsRevert(err, tc.revert) {
				t.Fatalf("got %v, want revert %s", err, tc.revert)
			}
		})
	}
	// Withdrawing before the challenge ends, and only by the payer.
	if _, err := e.payer.StartClose(ctx, e.payee.Address(), tok); err != nil {
		t.Fatal(err)
	}
	if err := e.send(e.payer, e.esc.PackWithdraw(e.payee.Address(), tok), 0); !IsRevert(err, "ChallengePeriod") {
		t.Fatalf("early withdraw: %v", err)
	}
	if err := e.send(e.payee, e.esc.PackWithdraw(e.payee.Address(), tok), 0); !IsRevert(err, "NotClosing") {
		t.Fatalf("withdraw by the payee (its own, unopened channel): %v", err)
	}
}

// badVoucher is a voucher the escrow must refuse, and its reason.
type badVoucher struct {
	name   string
	v      *Voucher
	revert string
}

// badVouchers are the payer's vouchers for tok, replayed, forged or bent.
func (e *simEnv) badVouchers(tok common.Address) []badVoucher {
	return []badVoucher{
		{"replayed voucher", e.voucher(tok, 9), "NothingToRedeem"},
		{"lower cumulative amount", e.voucher(tok, 5), "NothingToRedeem"},
		{"more than deposited", e.voucher(tok, 16), "ExceedsDeposit"},
		{"signed by someone else", func() *Voucher {
			v := NewVoucher(e.payer.ChainID(), e.escrow, e.payer.Address(), e.payee.Address(), tok, big.NewInt(12))
			d, _ := v.Digest()
			sig, _ := crypto.Sign(d[:], e.otherK)
			sig[64] += 27
			v.Signature = sig
			return v
		}(), "BadSignature"},
		{"for another channel (other payee)", e.resign(e.voucher(tok, 12), func(v *Voucher) { v.Payee = e.other.Address() }), "BadSignature"},
		{"for another channel (other token)", func() *Voucher {
			v := e.resign(e.voucher(tok, 12), func(v *Voucher) { v.Token = common.HexToAddress("0x1234") })
			v.Token, v.Channel = tok, ChannelID(v.Payer, v.Payee, tok) // presented for the tok channel
			return v
		}(), "BadSignature"},
		{"for another chain", e.resign(e.voucher(tok, 12), func(v *Voucher) { v.ChainID = NewAmount(big.NewInt(1)) }), "BadSignature"},
		{"for another contract", e.resign(e.voucher(tok, 12), func(v *Voucher) { v.Escrow = common.HexToAddress("0xbeef") }), "BadSignature"},
		{"malleable signature", highS(e.voucher(tok, 12)), "BadSignature"},
		{"truncated signature", func() *Voucher { v := e.voucher(tok, 12); v.Signature = v.Signature[:64]; return v }(), "BadSignature"},
	}
}

// resign changes v with k and signs it again with the payer's key.
func (e *simEnv) resign(v *Voucher, k func(*Voucher)) *Voucher {
	k(v)
	v.Channel = ChannelID(v.Payer, v.Payee, v.Token)
	d, err := v.Digest()
	if err != nil {
		e.t.Fatal(err)
	}
	sig, _ := crypto.Sign(d[:], e.payerK)
	sig[64] += 27
	v.Signature = sig
	return v
}

// highS gives v the other, high-S signature of the same digest.
func highS(v *Voucher) *Voucher {
	n := crypto.S256().Params().N
	s := new(big.Int).SetBytes(v.Signature[32:64])
	s.Sub(n, s)
	sig := bytes.Clone(v.Signature)
	s.FillBytes(sig[32:64])
	sig[64] ^= 1 // 27 <-> 28
	v.Signature = sig
	return v
}

// badCall is a call to the escrow that must revert, and its reason.
type badCall struct {
	name   string
	from   *Client
	data   []byte
	value  int64
	revert string
}

// badCalls are deposits, redeems, withdraws and closes the escrow refuses.
func (e *simEnv) badCalls(tok common.Address) []badCall {
	return []badCall{
		{"deposit to the zero address", e.payer, e.esc.PackDeposit(common.Address{}, tok, big.NewInt(1)), 0, "ZeroAddress"},
		{"deposit of zero", e.payer, e.esc.PackDeposit(e.payee.Address(), tok, big.NewInt(0)), 0, "ZeroAmount"},
		{"deposit to oneself", e.payer, e.esc.PackDeposit(e.payer.Address(), tok, big.NewInt(1)), 0, "SelfChannel"},
		{"native deposit with the wrong value", e.payer, e.esc.PackDeposit(e.payee.Address(), NativeToken, big.NewInt(5)), 4, "WrongValue"},
		{"token deposit with value", e.payer, e.esc.PackDeposit(e.payee.Address(), tok, big.NewInt(5)), 5, "WrongValue"},
		{"redeem from the zero payer", e.payee, e.esc.PackRedeem(common.Address{}, tok, big.NewInt(1), make([]byte, 65)), 0, "ZeroAddress"},
		{"withdraw an open channel", e.payer, e.esc.PackWithdraw(e.payee.Address(), tok), 0, "NotClosing"},
		{"close a channel never opened", e.other, e.esc.PackStartClose(e.payee.Address(), tok), 0, "ZeroAmount"},
		// The token's own errors come through the escrow and read by name
		// (contracts.ERC20 carries them).
		{"token deposit without allowance", e.other, e.esc.PackDeposit(e.payee.Address(), tok, big.NewInt(1)), 0, "ERC20InsufficientAllowance"},
		{"token deposit beyond the balance", e.payer, e.esc.PackDeposit(e.payee.Address(), tok, new(big.Int).Add(DevToken, big.NewInt(1))), 0, "ERC20InsufficientBalance"},
	}
}

// send calls the escrow with data and value from c, skipping the
// client's own checks.
func (e *simEnv) send(c *Client, data []byte, value int64) error {
	_, err := c.tx.send(context.Background(), "call", e.escrow, big.NewInt(value), data)
	return err
}

// A malicious token that calls back into the escrow while being paid out
// gets nothing more: the guard refuses the nested call.
func TestReentrantToken(t *testing.T) {
	e := newSim(t)
	ctx := context.Background()
	rt := testcontracts.NewReentrantToken()
	deployer, addr := e.deploy(testcontracts.ReentrantTokenMetaData.Bin)
	inst := rt.Instance(e.b, addr)
	call := func(data []byte) {
		t.Helper()
		tx, err := bind.Transact(inst, deployer, data)
		if err != nil {
			t.Fatal(err)
		}
		mustMined(t, e.b, tx)
	}
	check := func(what string) {
		t.Helper()
		opts := &bind.CallOpts{Context: ctx}
		attempted, _ := bind.Call(inst, opts, rt.PackAttempted(), rt.UnpackAttempted)
		reentered, _ := bind.Call(inst, opts, rt.PackReentered(), rt.UnpackReentered)
		data, _ := bind.Call(inst, opts, rt.PackRevertData(), rt.UnpackRevertData)
		guard := crypto.Keccak256([]byte("ReentrancyGuardReentrantCall()"))[:4]
		if !attempted || reentered || !bytes.HasPrefix(data, guard) {
			t.Fatalf("%s: attempted %v, reentered %v, revert data %x", what, attempted, reentered, data)
		}
	}

	// The token is the payee: while redeem pays it, it redeems again.
	if _, err := e.payer.Deposit(ctx, addr, addr, big.NewInt(0)); err == nil {
		t.Fatal("zero deposit accepted")
	}
	mint := func(to common.Address) { call(rt.PackMint(to, big.NewInt(1000))) }
	mint(e.payer.Address())
	if _, err := e.payer.Deposit(ctx, addr, addr, big.NewInt(100)); err != nil {
		t.Fatal(err)
	}
	v1, _ := e.payer.SignVoucher(addr, addr, big.NewInt(30))
	v2, _ := e.payer.SignVoucher(addr, addr, big.NewInt(100))
	call(rt.PackArm(e.escrow, e.esc.PackRedeem(e.payer.Address(), addr, v2.CumulativeAmount.Big(), v2.Signature)))
	call(rt.PackExec(e.escrow, e.esc.PackRedeem(e.payer.Address(), addr, v1.CumulativeAmount.Big(), v1.Signature)))
	check("redeem")
	ch, _ := e.payer.Channel(ctx, e.payer.Address(), addr, addr)
	if ch.Redeemed.Int64() != 30 {
		t.Fatalf("redeemed %s, want 30", ch.Redeemed)
	}
}

// A token that takes a fee on transfer credits the channel with what the
// escrow actually received.
func TestFeeOnTransferToken(t *testing.T) {
	e := newSim(t)
	ctx := context.Background()
	ft := testcontracts.NewFeeToken()
	deployer, addr := e.deploy(testcontracts.FeeTokenMetaData.Bin)
	tx, err := bind.Transact(ft.Instance(e.b, addr), deployer, ft.PackMint(e.payer.Address(), big.NewInt(10_000)))
	if err != nil {
		t.Fatal(err)
	}
	mustMined(t, e.b, tx)
	if _, err := e.payer.Deposit(ctx, e.payee.Address(), addr, big.NewInt(1000)); err != nil {
		t.Fatal(err)
	}
	if ch := e.channel(addr); ch.Deposited.Int64() != 990 {
		t.Fatalf("credited %s, want 990 (1000 less the 1%% fee)", ch.Deposited)
	}
	if err := e.rawRedeem(e.payee, e.voucher(addr, 1000)); !IsRevert(err, "ExceedsDeposit") {
		t.Fatalf("redeeming the fee: %v", err)
	}
}

// The watcher reports every change to a channel, in order, once.
func TestWatchEvents(t *testing.T) {
	e := newSim(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	got := make(chan Event, 16)
	go e.payee.Watch(ctx, 0, func(ev Event) { got <- ev })
	tok := e.token
	if _, err := e.payer.Deposit(ctx, e.payee.Address(), tok, big.NewInt(10)); err != nil {
		t.Fatal(err)
	}
	if _, err := e.payee.Redeem(ctx, e.voucher(tok, 4)); err != nil {
		t.Fatal(err)
	}
	if _, err := e.payer.StartClose(ctx, e.payee.Address(), tok); err != nil {
		t.Fatal(err)
	}
	e.sim.AdjustTime(testChallenge * time.Second)
	if _, err := e.payer.Withdraw(ctx, e.payee.Address(), tok); err != nil {
		t.Fatal(err)
	}
	want := []struct {
		kind   string
		amount int64
	}{{"deposited", 10}, {"redeemed", 4}, {"close_started", -1}, {"withdrawn", 6}}
	id := ChannelID(e.payer.Address(), e.payee.Address(), tok)
	for _, w := range want {
		select {
		case ev := <-got:
			if ev.Kind != w.kind || ev.Channel != id || (w.amount >= 0 && ev.Amount.Int64() != w.amount) {
				t.Fatalf("event %+v, want %s of %d", ev, w.kind, w.amount)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("no %s event", w.kind)
		}
	}
	select {
	case ev := <-got:
		t.Fatalf("extra event %+v", ev)
	case <-time.After(50 * time.Millisecond):
	}
}

// With confirmations set, a deposit returns only once that many blocks
// hold it.
func TestConfirmations(t *testing.T) {
	e := newSim(t)
	ctx := context.Background()
	cfg := Config{Escrow: e.escrow, Token: e.token, Poll: time.Millisecond, Confirmations: 3}
	// One block maker only: two concurrent commits on the simulated chain
	// would fork it (which the client rightly reports as a reorg).
	c := e.client(e.payerK, cfg, func(Backend) Backend { return e.sim.Client() })
	stop := make(chan struct{})
	go func() { // other activity keeps making blocks
		for {
			select {
			case <-stop:
				return
			case <-time.After(5 * time.Millisecond):
				e.sim.Commit()
			}
		}
	}()
	defer close(stop)
	r, err := c.Deposit(ctx, e.payee.Address(), NativeToken, big.NewInt(5))
	if err != nil {
		t.Fatal(err)
	}
	head, err := e.b.BlockNumber(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if head < r.BlockNumber.Uint64()+2 {
		t.Fatalf("returned at head %d for a receipt in block %d: fewer than 3 confirmations", head, r.BlockNumber)
	}
}
