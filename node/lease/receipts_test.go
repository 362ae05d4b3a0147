package lease

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/aixblock/aixblock/jobs"
	"github.com/aixblock/aixblock/market"
	"github.com/aixblock/aixblock/market/receipt"
	"github.com/aixblock/aixblock/node/api"
	"github.com/aixblock/aixblock/p2p"
	"github.com/aixblock/aixblock/p2p/p2ptest"
	"github.com/libp2p/go-libp2p/core/host"
)

// receiptSides is a provider with a job of a deal ended, and that
// deal's requester, each with its receipt store, over a mocknet with a
// stranger beside them.
type receiptSides struct {
	reqHost, provHost, stranger host.Host
	pv                          *Provider
	rq                          *Requester
	runner                      *fakeRunner
	deal                        market.Deal
	rstore, pstore              *receipt.Store
}

const receiptNet = "leasetest"

func newReceiptSides(t testing.TB) *receiptSides {
	t.Helper()
	hs := p2ptest.MockHosts(t, 3)
	s := &receiptSides{reqHost: hs[0], provHost: hs[1], stranger: hs[2], runner: newFakeRunner()}
	id := sha256.Sum256([]byte("receipt deal"))
	s.deal = market.Deal{DealTerms: market.DealTerms{ID: hex.EncodeToString(id[:]), Requester: s.reqHost.ID().String(),
		RequesterWallet: "0x00000000000000000000000000000000000000a1", Provider: s.provHost.ID().String(),
		ProviderWallet: "0x00000000000000000000000000000000000000c2", Token: "native", Price: "3600", MaxDurationS: 3600, GPUs: []string{"GPU-0"}}}
	s.pstore, s.rstore = receiptStore(t, s.provHost), receiptStore(t, s.reqHost)
	s.pv = testProvider(t, Config{P2P: &p2p.Node{Host: s.provHost}, Receipts: s.pstore,
		Proofs: func() []string { return []string{strings.Repeat("b", 64), strings.Repeat("a", 64)} }})
	s.pv.jobs = s.runner
	s.pv.register()
	s.rq = testRequester(t, Config{P2P: &p2p.Node{Host: s.reqHost}, Receipts: s.rstore})
	return s
}

func receiptStore(t testing.TB, h host.Host) *receipt.Store {
	t.Helper()
	s, err := receipt.OpenStore(receipt.StoreConfig{Network: receiptNet, Self: h.ID(), Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// run has the provider run job id of the deal for a minute, ended in
// st, and returns the requester's record of it as it saw it.
func (s *receiptSides) run(t testing.TB, id string, st jobs.State) *Record {
	t.Helper()
	if _, err := s.runner.Submit(jobs.Spec{Image: "x"}, jobs.SubmitOptions{ID: id}); err != nil {
		t.Fatal(err)
	}
	s.pv.mu.Lock()
	s.pv.provided[id] = s.deal
	s.pv.mu.Unlock()
	j, err := s.runner.set(id, func(j *jobs.Job) {
		start, end := time.Now().Add(-time.Minute), time.Now()
		j.State, j.StartedAt, j.FinishedAt = st, &start, &end
		j.ResultCID = "bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy"
	})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	return &Record{ID: id, Provider: s.provHost.ID().String(), Deal: s.deal, Last: &api.Job{Job: *j},
		RunSeen: now.Add(-time.Minute), RunUntil: now, EndSeen: now, LastSeen: now, Answered: now.Add(-time.Minute), Settled: true}
}

// A deal that ended leaves one receipt both sides signed, in both
// stores, with what the requester paid for the time it saw, the result
// the provider made and the proof-of-GPU records behind it.
func TestReceiptExchange(t *testing.T) {
	s := newReceiptSides(t)
	rj := s.run(t, "00000000000000d1", jobs.Completed)
	s.rq.settleReceipt(t.Context(), rj)
	for name, st := range map[string]*receipt.Store{"requester": s.rstore, "provider": s.pstore} {
		got, ok := st.Get(s.deal.ID)
		if !ok || got.Kind != receipt.Both || got.Paid != "60" || got.RunMs != 60_000 || got.Outcome != receipt.None || got.Result == "" {
			t.Fatalf("the %s holds %+v", name, got)
		}
		if len(got.Proofs) != 2 || got.Proofs[0] != strings.Repeat("a", 64) {
			t.Fatalf("the %s's receipt names proofs %v", name, got.Proofs)
		}
	}
	// Settled again (a restart, a second round): nothing more is asked.
	s.rq.settleReceipt(t.Context(), rj)
	if s.rstore.Len() != 1 || s.pstore.Len() != 1 {
		t.Fatalf("receipts %d and %d", s.rstore.Len(), s.pstore.Len())
	}
}

// Where the provider's account differs from the requester's (another
// result), or the provider is gone, the requester keeps its own word
// alone: a one-sided receipt, failed for a provider that vanished.
func TestReceiptOneSided(t *testing.T) {
	s := newReceiptSides(t)
	rj := s.run(t, "00000000000000d2", jobs.Completed)
	rj.Last.ResultCID = "bafkreidgvpkjawlxz6sffxzwgooowe5yt7i6wsyg236mfoks77nywkptdq"
	s.rq.settleReceipt(t.Context(), rj)
	if got, ok := s.rstore.Get(s.deal.ID); !ok || got.Kind != receipt.RequesterOnly || got.Result != rj.Last.ResultCID {
		t.Fatalf("the requester holds %+v", got)
	}
	if got, _ := s.pstore.Get(s.deal.ID); got.Kind != receipt.ProviderOnly {
		t.Fatalf("the provider holds %+v: it signed its own account, alone", got)
	}

	gone := newReceiptSides(t)
	rj = gone.run(t, "00000000000000d3", jobs.Failed)
	rj.Provider, rj.Unreachable = gone.stranger.ID().String(), true
	gone.rq.settleReceipt(t.Context(), rj)
	if got, ok := gone.rstore.Get(gone.deal.ID); !ok || got.Kind != receipt.RequesterOnly || got.Outcome != receipt.Failed {
		t.Fatalf("the requester holds %+v for a provider gone", got)
	}
}

// From the attacker's side: a stranger asks for the receipt of another's
// deal, or pushes a receipt; the requester asks before the job ended.
func TestReceiptHostile(t *testing.T) {
	s := newReceiptSides(t)
	id := "00000000000000d4"
	s.run(t, id, jobs.Completed)
	running := "00000000000000d5"
	if _, err := s.runner.Submit(jobs.Spec{Image: "x"}, jobs.SubmitOptions{ID: running}); err != nil {
		t.Fatal(err)
	}
	s.pv.mu.Lock()
	s.pv.provided[running] = s.deal
	s.pv.mu.Unlock()
	forged := signed(t, s, id)
	for _, c := range []struct {
		name string
		from host.Host
		body receiptRequest
		want string
	}{
		{"a stranger asks for the receipt", s.stranger, receiptRequest{ID: id, Paid: "1", RunMs: 1, EndedMs: 1}, "no deal of yours"},
		{"a stranger pushes a receipt", s.stranger, receiptRequest{ID: id, Signed: forged}, "no deal of yours"},
		{"the requester pushes a one-sided receipt", s.reqHost, receiptRequest{ID: id, Signed: forged}, "not of deal"},
		{"a job still running", s.reqHost, receiptRequest{ID: running, Paid: "1", RunMs: 1, EndedMs: 1}, "has not ended"},
		{"a path for a job ID", s.reqHost, receiptRequest{ID: "../../etc"}, "job ID"},
		{"an account out of bounds", s.reqHost, receiptRequest{ID: id, Paid: "-5", RunMs: 1, EndedMs: 1}, "paid"},
	} {
		t.Run(c.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
			defer cancel()
			_, err := p2p.Request(ctx, c.from, s.provHost.ID(), p2p.ProtocolID("", wireReceipt.id), mustJSON(t, c.body), wireReceipt.limits)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("got %v, want an error with %q", err, c.want)
			}
		})
	}
	if s.pstore.Len() != 0 {
		t.Fatalf("the provider keeps %d receipts", s.pstore.Len())
	}
}

// signed is the requester's one-sided receipt of job id's deal.
func signed(t *testing.T, s *receiptSides, id string) []byte {
	t.Helper()
	r := dealReceipt(receiptNet, s.deal, receiptRequest{ID: id, Paid: "60", RunMs: 60_000, EndedMs: time.Now().UnixMilli()})
	raw, err := r.Sign(s.reqHost.Peerstore().PrivKey(s.reqHost.ID()))
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// The receipt protocol's request, whatever the bytes, from the deal's
// requester and from a stranger: the provider never panics, a stranger
// gets nothing, and the provider keeps no receipt but of the deal.
func FuzzReceiptRequest(f *testing.F) {
	s := newReceiptSides(f)
	id := "00000000000000f2"
	s.run(f, id, jobs.Completed)
	f.Add([]byte(`{"id":"` + id + `","paid":"60","run_ms":60000,"ended_ms":1700000000000}`))
	f.Add([]byte(`{"id":"` + id + `","signed":"oWFiQA=="}`))
	f.Add([]byte(`{"id":"../x"}`))
	f.Add([]byte(`{"id":1}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		if _, err := s.pv.handleJobReceipt(t.Context(), s.stranger.ID(), b); err == nil {
			t.Fatalf("a stranger got an answer to %q", b)
		}
		_, _ = s.pv.handleJobReceipt(t.Context(), s.reqHost.ID(), b) // any answer, no panic
		for _, r := range s.pstore.Receipts(s.provHost.ID()) {
			if r.Deal != s.deal.ID {
				t.Fatalf("the provider keeps a receipt of deal %s", r.Deal)
			}
		}
	})
}
