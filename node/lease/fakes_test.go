package lease

import (
	"context"
	"errors"
	"fmt"
	"math/big"
	"net"
	"slices"
	"sync"
	"time"

	"github.com/aixblock/aixblock/chain"
	"github.com/aixblock/aixblock/gpu"
	"github.com/aixblock/aixblock/jobs"
	"github.com/aixblock/aixblock/market"
	"github.com/aixblock/aixblock/node/api"
	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/core/types"
)

// Fakes of the services each side needs (deps.go), for a side tested
// alone; the real ones are in the CLI's end-to-end tests.

var (
	fakeToken  = common.HexToAddress("0x00000000000000000000000000000000000000a1")
	fakeEscrow = common.HexToAddress("0x00000000000000000000000000000000000000e5")
	fakeChain  = big.NewInt(31337)
)

// waitLong is how long a side's test waits for a condition: generous,
// for a busy machine.
const waitLong = 60 * time.Second

type fakeAddr common.Address

func (a fakeAddr) Address() common.Address { return common.Address(a) }

// fakeChannels is a chain of channels: deposits add up, every read sees
// them at once (no confirmations), the wallet holds plenty.
type fakeChannels struct {
	mu        sync.Mutex
	deposited map[common.Hash]*big.Int
	payer     common.Address
}

func newFakeChannels(payer common.Address) *fakeChannels {
	return &fakeChannels{deposited: map[common.Hash]*big.Int{}, payer: payer}
}

func (f *fakeChannels) deposit(payer, payee, token common.Address, amount *big.Int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	id := chain.ChannelID(payer, payee, token)
	if f.deposited[id] == nil {
		f.deposited[id] = new(big.Int)
	}
	f.deposited[id].Add(f.deposited[id], amount)
}

func (f *fakeChannels) Channel(_ context.Context, payer, payee, token common.Address) (chain.Channel, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	id := chain.ChannelID(payer, payee, token)
	d := new(big.Int)
	if f.deposited[id] != nil {
		d.Set(f.deposited[id])
	}
	return chain.Channel{ID: id, Payer: payer, Payee: payee, Token: token, Deposited: chain.NewAmount(d),
		Redeemed: chain.NewAmount(new(big.Int)), Available: chain.NewAmount(d)}, nil
}

func (f *fakeChannels) ConfirmedChannel(ctx context.Context, payer, payee, token common.Address) (chain.Channel, error) {
	return f.Channel(ctx, payer, payee, token)
}

func (f *fakeChannels) Balance(context.Context, common.Address) (*big.Int, error) {
	return big.NewInt(1e15), nil
}
func (f *fakeChannels) DefaultToken() common.Address { return fakeToken }
func (f *fakeChannels) Deposit(_ context.Context, payee, token common.Address, amount *big.Int) (*types.Receipt, error) {
	f.deposit(f.payer, payee, token, amount)
	return &types.Receipt{Status: types.ReceiptStatusSuccessful}, nil
}
func (f *fakeChannels) DepositGasCost(context.Context) (*big.Int, error) { return big.NewInt(1), nil }
func (f *fakeChannels) SignVoucher(payee, token common.Address, cumulative *big.Int) (*chain.Voucher, error) {
	return chain.NewVoucher(fakeChain, fakeEscrow, f.payer, payee, token, cumulative), nil
}
func (f *fakeChannels) TokenInfo(context.Context, common.Address) (string, uint8, error) {
	return "TOK", 6, nil
}
func (f *fakeChannels) ChainID() *big.Int      { return fakeChain }
func (f *fakeChannels) Escrow() common.Address { return fakeEscrow }
func (f *fakeChannels) Confirmations() uint64  { return 1 }
func (f *fakeChannels) Redeem(context.Context, *chain.Voucher) (*types.Receipt, error) {
	return nil, errors.New("fake chain: no redeem")
}
func (f *fakeChannels) RedeemBatch(context.Context, []*chain.Voucher) (*types.Receipt, error) {
	return nil, errors.New("fake chain: no redeem")
}

// fakeBuyer's market answers every offer with its one deal.
type fakeBuyer struct {
	deal market.Deal
	rep  *market.Reputation
	// many: deals for several at once, each its own deal ID; asked
	// records each negotiation's count.
	many  bool
	mu    sync.Mutex
	asked []int
}

func (f *fakeBuyer) NegotiateMany(_ context.Context, r market.OfferRequest, count int) ([]*market.Deal, market.NegotiationStats, error) {
	f.mu.Lock()
	f.asked = append(f.asked, count)
	f.mu.Unlock()
	var out []*market.Deal
	for i := range max(count, 1) {
		d := f.deal
		d.SpecHash = r.SpecHash
		if f.many {
			d.ID = fmt.Sprintf("%s-%d", d.ID, i)
		} else if i > 0 {
			break
		}
		out = append(out, &d)
	}
	return out, market.NegotiationStats{}, nil
}

// negotiations are the counts asked so far.
func (f *fakeBuyer) negotiations() []int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.asked)
}
func (f *fakeBuyer) Reputation() *market.Reputation { return f.rep }

// fakeSeller's market holds its one deal, won with its offer.
type fakeSeller struct {
	mu       sync.Mutex
	deal     market.Deal
	offer    market.JobOffer
	claimed  bool
	released bool
	// bidFor: offer ID -> the requester this seller holds a bid for.
	bidFor map[string]string
}

func (f *fakeSeller) VerifyDeal(market.Deal) error { return nil }
func (f *fakeSeller) Deals() []market.Deal         { return []market.Deal{f.deal} }
func (f *fakeSeller) DealOffer(id string) (market.JobOffer, bool) {
	return f.offer, id == f.deal.ID
}
func (f *fakeSeller) DiskBound(string) (uint64, bool) { return 0, false }
func (f *fakeSeller) Claim(id string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.claimed || id != f.deal.ID {
		return errors.New("fake market: deal claimed already, or unknown")
	}
	f.claimed = true
	return nil
}
func (f *fakeSeller) Started(string) {}
func (f *fakeSeller) Release(string) {
	f.mu.Lock()
	f.released = true
	f.mu.Unlock()
}
func (f *fakeSeller) ReleaseUnstarted(string) bool { return false }
func (f *fakeSeller) BidFor(offer, requester string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.bidFor[offer] == requester && requester != ""
}

// reply is a provider's answer about a job as the requester keeps it.
func reply(j jobs.Job) *api.Job { return &api.Job{Job: j} }

// fakeRunner runs jobs in memory: a submitted job runs at once until the
// test ends it.
type fakeRunner struct {
	mu        sync.Mutex
	jobs      map[string]*jobs.Job
	submitted []jobs.SubmitOptions
	regroups  []jobs.Regroup
	goes      []string // checkpoints the go requests named
	rejoined  []string
	changed   chan struct{} // closed and replaced on every change
}

func newFakeRunner() *fakeRunner {
	return &fakeRunner{jobs: map[string]*jobs.Job{}, changed: make(chan struct{})}
}

func (f *fakeRunner) set(id string, fn func(j *jobs.Job)) (*jobs.Job, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	j := f.jobs[id]
	if j == nil {
		return nil, jobs.ErrNotFound
	}
	fn(j)
	close(f.changed)
	f.changed = make(chan struct{})
	c := *j
	return &c, nil
}

func (f *fakeRunner) Submit(spec jobs.Spec, opts jobs.SubmitOptions) (*jobs.Job, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	now := time.Now()
	j := &jobs.Job{ID: opts.ID, Spec: spec, State: jobs.Running, CreatedAt: now, StartedAt: &now}
	f.jobs[j.ID] = j
	f.submitted = append(f.submitted, opts)
	c := *j
	return &c, nil
}
func (f *fakeRunner) Get(id string) (*jobs.Job, error) { return f.set(id, func(*jobs.Job) {}) }
func (f *fakeRunner) AwaitChange(ctx context.Context, id string, seen jobs.State) (*jobs.Job, error) {
	for {
		f.mu.Lock()
		j, ch := f.jobs[id], f.changed
		f.mu.Unlock()
		if j == nil {
			return nil, jobs.ErrNotFound
		}
		if j.State != seen {
			return f.Get(id)
		}
		select {
		case <-ctx.Done():
			return f.Get(id)
		case <-ch:
		}
	}
}
func (f *fakeRunner) Prepared(string) bool { return true }
func (f *fakeRunner) Gated(string) bool    { return false }
func (f *fakeRunner) Go(_ string, _ []string, checkpoint string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.goes = append(f.goes, checkpoint)
	return nil
}
func (f *fakeRunner) Regroup(id string, rg jobs.Regroup) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.regroups = append(f.regroups, rg)
	return nil
}
func (f *fakeRunner) RejoinNetwork(_ context.Context, id string, _ jobs.Rejoin) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.rejoined = append(f.rejoined, id)
	return nil
}
func (f *fakeRunner) Pause(_ context.Context, id, reason string) (*jobs.Job, error) {
	return f.set(id, func(j *jobs.Job) {
		now := time.Now()
		j.PausedAt, j.Reason = &now, "paused: "+reason
	})
}
func (f *fakeRunner) Resume(_ context.Context, id string) (*jobs.Job, error) {
	return f.set(id, func(j *jobs.Job) { j.PausedAt, j.Reason = nil, "" })
}
func (f *fakeRunner) Cancel(id string) (*jobs.Job, error) { return f.end(id, jobs.Canceled, "") }
func (f *fakeRunner) Fail(id, reason string) (*jobs.Job, error) {
	return f.end(id, jobs.Failed, reason)
}
func (f *fakeRunner) end(id string, st jobs.State, reason string) (*jobs.Job, error) {
	return f.set(id, func(j *jobs.Job) {
		now := time.Now()
		j.State, j.Reason, j.FinishedAt = st, reason, &now
	})
}
func (f *fakeRunner) PortDialer(string, int) (func(context.Context) (net.Conn, error), error) {
	return nil, errors.New("fake runner: no ports")
}

func (f *fakeRunner) ReadLog(id string, offset int64, max int) (jobs.LogChunk, error) {
	return jobs.LogChunk{}, errors.New("fake runner: no logs")
}

// noHealthChanges is GPUs that never fail.
type noHealthChanges struct{}

func (noHealthChanges) Subscribe() (<-chan gpu.Change, func()) { return nil, func() {} }
