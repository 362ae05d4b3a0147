package lease

import (
	"context"
	"math/big"
	"net"

	"github.com/aixblock/aixblock/chain"
	"github.com/aixblock/aixblock/gpu"
	"github.com/aixblock/aixblock/jobs"
	"github.com/aixblock/aixblock/market"
	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/core/types"
	"github.com/ipfs/go-cid"
)

// What each side needs of the node's services, as small interfaces: a
// side runs alone in a test against fakes, and the wiring hands it the
// real ones (Config). A nil service stays a nil interface (see New).

// The requester's needs.
type (
	// buyer makes deals and rates providers (market.Market).
	buyer interface {
		NegotiateMany(ctx context.Context, r market.OfferRequest, count int) ([]*market.Deal, market.NegotiationStats, error)
		Reputation() *market.Reputation
	}
	// payer funds channels and signs vouchers (chain.Client).
	payer interface {
		Balance(ctx context.Context, token common.Address) (*big.Int, error)
		Channel(ctx context.Context, payer, payee, token common.Address) (chain.Channel, error)
		DefaultToken() common.Address
		Deposit(ctx context.Context, payee, token common.Address, amount *big.Int) (*types.Receipt, error)
		DepositGasCost(ctx context.Context) (*big.Int, error)
		SignVoucher(payee, token common.Address, cumulative *big.Int) (*chain.Voucher, error)
		TokenInfo(ctx context.Context, token common.Address) (symbol string, decimals uint8, err error)
	}
	// localJobs tells a job of this node's own from a market job
	// (jobs.Manager).
	localJobs interface {
		Get(id string) (*jobs.Job, error)
	}
	// directory makes one CID of a distributed job's ranks' results
	// (content.Store).
	directory interface {
		Directory(ctx context.Context, entries map[string]cid.Cid) (cid.Cid, error)
	}
)

// The provider's needs.
type (
	// runner runs the market's jobs here (jobs.Manager).
	runner interface {
		Submit(spec jobs.Spec, opts jobs.SubmitOptions) (*jobs.Job, error)
		Get(id string) (*jobs.Job, error)
		AwaitChange(ctx context.Context, id string, seen jobs.State) (*jobs.Job, error)
		Prepared(id string) bool
		Gated(id string) bool
		Go(id string, env []string, checkpoint string) error
		Regroup(id string, rg jobs.Regroup) error
		RejoinNetwork(ctx context.Context, id string, rj jobs.Rejoin) error
		Pause(ctx context.Context, id, reason string) (*jobs.Job, error)
		Resume(ctx context.Context, id string) (*jobs.Job, error)
		Cancel(id string) (*jobs.Job, error)
		Fail(id, reason string) (*jobs.Job, error)
		PortDialer(id string, port int) (func(ctx context.Context) (net.Conn, error), error)
		ReadLog(id string, offset int64, max int) (jobs.LogChunk, error)
	}
	// payee reads the channels that pay it and redeems their vouchers
	// (chain.Client).
	payee interface {
		ChainID() *big.Int
		Escrow() common.Address
		Confirmations() uint64
		Channel(ctx context.Context, payer, payee, token common.Address) (chain.Channel, error)
		ConfirmedChannel(ctx context.Context, payer, payee, token common.Address) (chain.Channel, error)
		Redeem(ctx context.Context, v *chain.Voucher) (*types.Receipt, error)
		RedeemBatch(ctx context.Context, vs []*chain.Voucher) (*types.Receipt, error)
	}
	// seller holds the deals this node won until their jobs start and end
	// (market.Market).
	seller interface {
		VerifyDeal(d market.Deal) error
		Deals() []market.Deal
		DealOffer(dealID string) (market.JobOffer, bool)
		DiskBound(dealID string) (uint64, bool)
		Claim(dealID string) error
		Started(dealID string)
		Release(dealID string)
		ReleaseUnstarted(dealID string) bool
		BidFor(offerID, requester string) bool
	}
	// healthFeed tells a job's watch that one of its GPUs failed
	// (gpu.Manager).
	healthFeed interface {
		Subscribe() (<-chan gpu.Change, func())
	}
)

// addresser is a wallet's address, which both sides pay to or from
// (chain.Wallet).
type addresser interface {
	Address() common.Address
}
