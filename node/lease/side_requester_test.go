package lease

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/aixblock/aixblock/chain"
	"github.com/aixblock/aixblock/jobs"
	"github.com/aixblock/aixblock/market"
	"github.com/aixblock/aixblock/node/api"
	"github.com/aixblock/aixblock/p2p"
	"github.com/aixblock/aixblock/p2p/p2ptest"
	"github.com/ethereum/go-ethereum/common"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
)

// fakeProvider answers a requester's lease messages over a mocknet as an
// honest provider would: it starts the job at once, runs it until the
// test ends it, holds status requests until the state changes, and keeps
// every voucher.
type fakeProvider struct {
	t         *testing.T
	requester peer.ID
	mu        sync.Mutex
	job       *jobs.Job
	changed   chan struct{}
	vouchers  []*chain.Voucher
	quit      chan struct{} // closed when the test ends: held status requests answer
	// refuse is how many prepares to refuse for the channel's deposit, as
	// a provider does while a rank cancelled a moment ago still stops;
	// prepares counts them all.
	refuse, prepares int
}

func newFakeProvider(t *testing.T, h host.Host, requester peer.ID) *fakeProvider {
	fp := &fakeProvider{t: t, requester: requester, changed: make(chan struct{}), quit: make(chan struct{})}
	t.Cleanup(func() { close(fp.quit) })
	node := &p2p.Node{Host: h}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	for w, handle := range map[wire]p2p.Handler{wireStart: fp.start, wireStatus: fp.status, wireVoucher: fp.voucher,
		wirePrepare: fp.prepare, wireGo: fp.goRank, wireCancel: fp.cancel} {
		p2p.Handle(h, node.ProtocolID(w.id), w.limits, log, handle)
	}
	return fp
}

func (fp *fakeProvider) start(_ context.Context, from peer.ID, b []byte) ([]byte, error) {
	var sr startRequest
	if err := json.Unmarshal(b, &sr); err != nil || from != fp.requester {
		return nil, fmt.Errorf("fake provider: start from %s: %v", from, err)
	}
	now := time.Now()
	fp.mu.Lock()
	defer fp.mu.Unlock()
	fp.job = &jobs.Job{ID: sr.JobID, Spec: sr.Spec, State: jobs.Running, CreatedAt: now, StartedAt: &now}
	return json.Marshal(fp.job)
}

// prepare takes a gang's rank, as start does a job, unless it is to
// refuse it for the deposit.
func (fp *fakeProvider) prepare(_ context.Context, from peer.ID, b []byte) ([]byte, error) {
	var pr prepareRequest
	if err := json.Unmarshal(b, &pr); err != nil || from != fp.requester {
		return nil, fmt.Errorf("fake provider: prepare from %s: %v", from, err)
	}
	fp.mu.Lock()
	defer fp.mu.Unlock()
	fp.prepares++
	if fp.prepares <= fp.refuse {
		return nil, fmt.Errorf("%s: the channel holds 0 base units beyond what is owed; deposit more", fundsRefusal)
	}
	now := time.Now()
	fp.job = &jobs.Job{ID: pr.JobID, Spec: pr.Spec, State: jobs.Running, CreatedAt: now, StartedAt: &now}
	return json.Marshal(prepareReply{Job: api.Job{Job: *fp.job}})
}

func (fp *fakeProvider) goRank(context.Context, peer.ID, []byte) ([]byte, error) {
	return []byte("ok"), nil
}

// cancel ends the rank prepared here.
func (fp *fakeProvider) cancel(context.Context, peer.ID, []byte) ([]byte, error) {
	fp.mu.Lock()
	defer fp.mu.Unlock()
	if fp.job == nil {
		return nil, errors.New("fake provider: no job")
	}
	now := time.Now()
	fp.job.State, fp.job.FinishedAt = jobs.Canceled, &now
	return json.Marshal(fp.job)
}

func (fp *fakeProvider) status(ctx context.Context, _ peer.ID, b []byte) ([]byte, error) {
	var r jobIDRequest
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, err
	}
	wait := time.NewTimer(time.Duration(r.WaitMs) * time.Millisecond)
	defer wait.Stop()
	for {
		fp.mu.Lock()
		j, changed := *fp.job, fp.changed
		fp.mu.Unlock()
		if r.WaitMs == 0 || j.State != r.Seen || j.State.Terminal() {
			return json.Marshal(j)
		}
		select {
		case <-changed:
		case <-wait.C:
			return json.Marshal(j)
		case <-fp.quit:
			return nil, errors.New("fake provider: closed")
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

func (fp *fakeProvider) voucher(_ context.Context, _ peer.ID, b []byte) ([]byte, error) {
	var v chain.Voucher
	if err := json.Unmarshal(b, &v); err != nil {
		return nil, err
	}
	fp.mu.Lock()
	fp.vouchers = append(fp.vouchers, &v)
	fp.mu.Unlock()
	return []byte("ok"), nil
}

// finish completes the job now.
func (fp *fakeProvider) finish() {
	fp.mu.Lock()
	defer fp.mu.Unlock()
	now := time.Now()
	fp.job.State, fp.job.FinishedAt = jobs.Completed, &now
	close(fp.changed)
	fp.changed = make(chan struct{})
}

// best is the highest cumulative amount vouched so far (0: none).
func (fp *fakeProvider) best() *big.Int {
	fp.mu.Lock()
	defer fp.mu.Unlock()
	best := new(big.Int)
	for _, v := range fp.vouchers {
		if v.CumulativeAmount.Big().Cmp(best) > 0 {
			best = v.CumulativeAmount.Big()
		}
	}
	return best
}

// The requester alone, against a fake provider over a mocknet and fakes
// of the market and the chain: a job is queued, dealt, funded, started,
// paid while it runs with vouchers that never go down, and paid its
// billed run at the end from a deposit that covers it.
// requesterRig is a requester against a fake provider over a mocknet,
// with fakes of the market and the chain, dealing deal (1 base unit a
// second of run).
type requesterRig struct {
	rq            *Requester
	fp            *fakeProvider
	channels      *fakeChannels
	deal          market.Deal
	payer, payee  common.Address
	reqID, provID peer.ID
}

func newRequesterRig(t *testing.T, price string, holdbackBps int) *requesterRig {
	t.Helper()
	hs := p2ptest.MockHosts(t, 2)
	reqHost, provHost := hs[0], hs[1]
	r := &requesterRig{payer: common.HexToAddress("0x00000000000000000000000000000000000000b1"),
		payee: common.HexToAddress("0x00000000000000000000000000000000000000b2"), reqID: reqHost.ID(), provID: provHost.ID()}
	r.channels = newFakeChannels(r.payer)
	rep, err := market.OpenReputation(filepath.Join(t.TempDir(), "reputation.json"))
	if err != nil {
		t.Fatal(err)
	}
	// price base units a GPU-hour on one GPU (3600: 1 a second).
	r.deal = market.Deal{DealTerms: market.DealTerms{ID: "deal-fake", Requester: reqHost.ID().String(), RequesterWallet: r.payer.Hex(),
		Provider: provHost.ID().String(), ProviderWallet: r.payee.Hex(), Token: fakeToken.Hex(), Price: price, MaxDurationS: 3600,
		GPUs: []string{"GPU-0"}, HoldbackBps: holdbackBps}}
	vouchers, err := OpenVouchers(filepath.Join(t.TempDir(), "vouchers.json"))
	if err != nil {
		t.Fatal(err)
	}
	r.rq = testRequester(t, Config{P2P: &p2p.Node{Host: reqHost}, Vouchers: vouchers, VoucherInterval: 200 * time.Millisecond})
	r.rq.market, r.rq.chain, r.rq.wallet = &fakeBuyer{deal: r.deal, rep: rep}, r.channels, fakeAddr(r.payer)
	r.fp = newFakeProvider(t, provHost, reqHost.ID())
	r.rq.spawn(r.rq.followRemote)
	return r
}

// record is the requester's record of job id (a copy).
func (r *requesterRig) record(id string) Record {
	r.rq.mu.Lock()
	defer r.rq.mu.Unlock()
	if rj := r.rq.records[id]; rj != nil {
		return *rj
	}
	return Record{}
}

func ptr[T any](v T) *T { return &v }

// state is job id's state as the requester last saw it.
func (r *requesterRig) state(id string) jobs.State {
	if rj := r.record(id); rj.Last != nil {
		return rj.Last.State
	}
	return ""
}

// runToEnd submits a job, sees it run and paid for at least run, and
// completes it.
func (r *requesterRig) runToEnd(t *testing.T, opts RemoteOptions, run time.Duration) string {
	t.Helper()
	spec := jobs.Spec{Image: "x", MaxPrice: "1", Resources: jobs.Resources{GPUs: 1}}
	j, err := r.rq.SubmitRemote(t.Context(), &spec, opts)
	if err != nil {
		t.Fatal(err)
	}
	p2ptest.WaitFor(t, waitLong, func() bool { return r.state(j.ID) == jobs.Running }, "the job running on the provider")
	p2ptest.WaitFor(t, waitLong, func() bool { return r.fp.best().Sign() > 0 }, "a voucher while it runs")
	p2ptest.WaitFor(t, waitLong, func() bool { return observedRun(ptr(r.record(j.ID)), 0) >= run }, "the job seen running for %s", run)
	r.fp.finish()
	p2ptest.WaitFor(t, waitLong, func() bool { return r.state(j.ID) == jobs.Completed }, "the job completed")
	return j.ID
}

func TestRequesterAgainstFakeProvider(t *testing.T) {
	r := newRequesterRig(t, "3600", 0)
	id := r.runToEnd(t, RemoteOptions{}, 0)
	fp, channels, deal, payer, payee := r.fp, r.channels, r.deal, r.payer, r.payee
	rj := r.record(id)
	owed, most := jobCost(&rj), dealCost(deal, time.Duration(deal.MaxDurationS)*time.Second)
	p2ptest.WaitFor(t, waitLong, func() bool { return fp.best().Cmp(owed) >= 0 }, "the final voucher to cover the billed run")
	fp.mu.Lock()
	defer fp.mu.Unlock()
	prev := new(big.Int)
	for _, v := range fp.vouchers {
		if v.Payer != payer || v.Payee != payee || v.Channel != chain.ChannelID(payer, payee, fakeToken) {
			t.Fatalf("a voucher for another channel: %+v", v)
		}
		if v.CumulativeAmount.Big().Cmp(prev) < 0 {
			t.Fatalf("vouchers went down: %s after %s", v.CumulativeAmount, prev)
		}
		prev = v.CumulativeAmount.Big()
	}
	if prev.Cmp(most) > 0 {
		t.Fatalf("vouched %s, more than the deal's most (%s)", prev, most)
	}
	ch, _ := channels.Channel(t.Context(), payer, payee, fakeToken)
	if ch.Deposited.Big().Cmp(prev) < 0 {
		t.Fatalf("vouched %s beyond the deposit of %s", prev, ch.Deposited)
	}
	t.Logf("billed %s for the run, vouched %s, deposited %s", owed, prev, ch.Deposited)
}
