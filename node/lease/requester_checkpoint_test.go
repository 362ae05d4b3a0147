package lease

import (
	"context"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/aixblock/aixblock/jobs"
	"github.com/aixblock/aixblock/market"
	"github.com/aixblock/aixblock/node/api"
	"github.com/aixblock/aixblock/p2p"
	"github.com/aixblock/aixblock/p2p/content"
	"github.com/aixblock/aixblock/p2p/p2ptest"
	"github.com/ethereum/go-ethereum/common"
	"github.com/ipfs/go-cid"
	mh "github.com/multiformats/go-multihash"
)

// fakePins is the block store's pins in memory.
type fakePins struct {
	mu     sync.Mutex
	pinned []string
	unpins []string
}

func (f *fakePins) Fetch(context.Context, cid.Cid, func(content.FetchStats)) (content.FetchStats, error) {
	return content.FetchStats{}, nil
}

func (f *fakePins) Pin(_ context.Context, c cid.Cid) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.pinned = append(f.pinned, c.String())
	return nil
}

func (f *fakePins) Unpin(_ context.Context, c cid.Cid) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.pinned = slices.DeleteFunc(f.pinned, func(s string) bool { return s == c.String() })
	f.unpins = append(f.unpins, c.String())
	return nil
}

func (f *fakePins) has(c string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Contains(f.pinned, c)
}

func fakeCID(s string) string {
	h, _ := mh.Sum([]byte(s), mh.SHA2_256, -1)
	return cid.NewCidV1(cid.Raw, h).String()
}

// The requester pins each checkpoint its provider reports, unpins the
// one before once the next is pinned, shows the pinned one (never a
// provider's word alone), and keeps the last after the job ends.
func TestRequesterPinsCheckpoints(t *testing.T) {
	hs := p2ptest.MockHosts(t, 2)
	reqHost, provHost := hs[0], hs[1]
	payer, payee := common.HexToAddress("0x00000000000000000000000000000000000000c1"), common.HexToAddress("0x00000000000000000000000000000000000000c2")
	rep, err := market.OpenReputation(filepath.Join(t.TempDir(), "reputation.json"))
	if err != nil {
		t.Fatal(err)
	}
	deal := market.Deal{DealTerms: market.DealTerms{ID: "deal-ckpt", Requester: reqHost.ID().String(), RequesterWallet: payer.Hex(),
		Provider: provHost.ID().String(), ProviderWallet: payee.Hex(), Token: fakeToken.Hex(), Price: "3600", MaxDurationS: 3600, GPUs: []string{"GPU-0"}}}
	vouchers, err := OpenVouchers(filepath.Join(t.TempDir(), "vouchers.json"))
	if err != nil {
		t.Fatal(err)
	}
	rq := testRequester(t, Config{P2P: &p2p.Node{Host: reqHost}, Vouchers: vouchers, VoucherInterval: 100 * time.Millisecond})
	pins := &fakePins{}
	rq.market, rq.chain, rq.wallet, rq.pins = &fakeBuyer{deal: deal, rep: rep}, newFakeChannels(payer), fakeAddr(payer), pins
	fp := newFakeProvider(t, provHost, reqHost.ID())
	rq.spawn(rq.followRemote)

	spec := jobs.Spec{Image: "x", MaxPrice: "1", Resources: jobs.Resources{GPUs: 1}, Checkpoint: &jobs.Checkpoint{}}
	j, err := rq.SubmitRemote(t.Context(), &spec, RemoteOptions{})
	if err != nil {
		t.Fatal(err)
	}
	shown := func() string {
		v, err := rq.remoteJobByID(t.Context(), j.ID)
		if err != nil || v.CheckpointCID == "" {
			return ""
		}
		return v.CheckpointCID
	}
	report := func(c string) {
		fp.mu.Lock()
		defer fp.mu.Unlock()
		fp.job.CheckpointCID = c
	}
	p2ptest.WaitFor(t, waitLong, func() bool { fp.mu.Lock(); defer fp.mu.Unlock(); return fp.job != nil }, "the job on the provider")
	first, second := fakeCID("step 1"), fakeCID("step 2")
	if shown() != "" {
		t.Fatal("a checkpoint shown before any was reported")
	}
	report(first)
	p2ptest.WaitFor(t, waitLong, func() bool { return shown() == first }, "the first checkpoint shown")
	report(second)
	p2ptest.WaitFor(t, waitLong, func() bool { return shown() == second }, "the second checkpoint shown")
	// The first is unpinned once the second is pinned and shown.
	p2ptest.WaitFor(t, waitLong, func() bool { return pins.has(second) && !pins.has(first) }, "only the second checkpoint pinned: %v", &pins.pinned)
	report("not-a-cid")
	fp.finish()
	p2ptest.WaitFor(t, waitLong, func() bool { v, _ := rq.remoteJobByID(t.Context(), j.ID); return v.State == jobs.Completed }, "the job completed")
	if shown() != second || !pins.has(second) {
		t.Fatalf("after the end: shown %q, pinned %v; want the last one kept", shown(), pins.pinned)
	}
}

// A rank restarted with a checkpoint and writing none reports that one
// back (its /checkpoints holds it): it is not pinned as newer, so a
// regrowth does not roll the job back to it. Nor is the spec's own from.
func TestRestoredCheckpointIsNotNewer(t *testing.T) {
	rq := testRequester(t, Config{})
	pins := &fakePins{}
	rq.pins = pins
	restored, from, written := fakeCID("restored"), fakeCID("from"), fakeCID("written")
	rj := &Record{ID: newJobID(), Last: &api.Job{}, Vouched: "0", Restored: restored,
		Spec: jobs.Spec{Checkpoint: &jobs.Checkpoint{From: from}}}
	rq.records[rj.ID] = rj
	rq.noteCheckpoint(rj, restored)
	rq.noteCheckpoint(rj, from)
	rq.noteCheckpoint(rj, written)
	p2ptest.WaitFor(t, waitLong, func() bool { return pins.has(written) }, "the written checkpoint pinned")
	pins.mu.Lock()
	defer pins.mu.Unlock()
	if !slices.Equal(pins.pinned, []string{written}) {
		t.Fatalf("pinned %v: only the checkpoint the rank wrote is newer", pins.pinned)
	}
}

// A restart pins its ranks' newest checkpoints itself (pinNow) rather
// than take what the follow rounds pinned a round behind: it waits for
// the pin under way, pins a new one, and leaves what the rank was
// restarted with alone.
func TestPinNowAfterThePinUnderWay(t *testing.T) {
	rq := testRequester(t, Config{})
	pins := &fakePins{}
	rq.pins = pins
	restored, newest := fakeCID("restored"), fakeCID("newest")
	rj := &Record{ID: newJobID(), Last: &api.Job{}, Vouched: "0", Restored: restored, Spec: jobs.Spec{Checkpoint: &jobs.Checkpoint{}}}
	rq.records[rj.ID] = rj
	rq.pinNow(t.Context(), rj, restored)
	if len(pins.pinned) != 0 {
		t.Fatalf("pinned %v: the checkpoint the rank was restarted with is not newer", pins.pinned)
	}
	rq.mu.Lock()
	rq.pinning[rj.ID] = true // a follow round's pin under way
	rq.mu.Unlock()
	gone, cancel := context.WithCancel(t.Context())
	cancel()
	rq.pinNow(gone, rj, newest) // waits for the pin under way, and gives up with its context
	if pins.has(newest) {
		t.Fatal("pinNow pinned beside the pin under way")
	}
	rq.pinned(rj)
	rq.pinNow(t.Context(), rj, newest)
	rq.mu.Lock()
	defer rq.mu.Unlock()
	if rj.Checkpoint != newest || !pins.has(newest) || rq.pinning[rj.ID] {
		t.Fatalf("after pinNow: checkpoint %s, pinned %v, pinning %v", rj.Checkpoint, pins.pinned, rq.pinning[rj.ID])
	}
}

// A kept rank that saved nothing reports the checkpoint its last
// generation restarted from; once the next restart names a newer one,
// that report is not new either (it was pinned late as the newest, and
// a growth restarted the gang from it, TestTorchElastic's rollback).
func TestAGenerationsCheckpointIsNotNewer(t *testing.T) {
	rq := testRequester(t, Config{})
	pins := &fakePins{}
	rq.pins = pins
	gen1, newer := fakeCID("generation 1 started here"), fakeCID("rank 0 wrote this")
	head, kept := newJobID(), newJobID()
	group := []string{head, kept}
	rq.records[head] = &Record{ID: head, Group: group, Last: &api.Job{}, Vouched: "0", Restored: newer,
		Elastic: &elasticState{Generation: 1, Started: []string{gen1}}, Spec: jobs.Spec{Checkpoint: &jobs.Checkpoint{}}}
	rj := &Record{ID: kept, Group: group, Rank: 1, Last: &api.Job{}, Vouched: "0", Restored: newer, Spec: jobs.Spec{Checkpoint: &jobs.Checkpoint{}}}
	rq.records[kept] = rj
	rq.pinNow(t.Context(), rj, gen1)
	if len(pins.pinned) != 0 || rj.Checkpoint != "" {
		t.Fatalf("pinned %v: generation 1's checkpoint taken as new", pins.pinned)
	}
}
