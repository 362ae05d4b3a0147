package receipt

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aixblock/aixblock/p2p/p2ptest"
)

// A requester gathers about a provider from the provider and from a
// peer it dealt with, not from a stranger it never asks; what it
// gathered counts in its view as the signer's trust says; it asks again
// only once Every has passed.
func TestGather(t *testing.T) {
	hs := p2ptest.MockHosts(t, 4)
	self, prov := hostParty(hs[0], "0x"+strings.Repeat("a", 40)), hostParty(hs[1], "0x"+strings.Repeat("b", 40))
	dealt, stranger := hostParty(hs[2], "0x"+strings.Repeat("c", 40)), hostParty(hs[3], "0x"+strings.Repeat("d", 40))
	var mu sync.Mutex
	now := testNow
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	mine := serve(t, hs[0], Limits{}, clock)
	ps, ds, ss := serve(t, hs[1], Limits{}, clock), serve(t, hs[2], Limits{}, clock), serve(t, hs[3], Limits{}, clock)
	mustAdd(t, mine, both(t, sample(dealt, self, "self-bought-from-dealt", time.Hour), dealt, self))
	mustAdd(t, ps, signBy(t, sample(prov, stranger, "provider-says", time.Hour), prov.key))
	mustAdd(t, ds, both(t, sample(prov, dealt, "dealt-1", 2*time.Hour), prov, dealt))
	mustAdd(t, ss, both(t, sample(prov, stranger, "stranger-1", 2*time.Hour), prov, stranger))

	g, err := NewGatherer(GatherConfig{Host: hs[0], Store: mine, Now: clock})
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	view := func() Evidence {
		return mine.View(ctx, prov.id, ViewConfig{Self: self.id, Dealt: mine.DealtWith()}, clock()).Evidence
	}
	if err := g.Gather(ctx, prov.id); err != nil {
		t.Fatal(err)
	}
	if ev := view(); ev != (Evidence{Dealt: 1, ProviderOnly: 1}) {
		t.Fatalf("evidence %+v, want one from the dealt peer and the provider's own", ev)
	}
	if _, held := mine.Get(dealID("stranger-1")); held {
		t.Fatal("a stranger was asked")
	}
	mustAdd(t, ds, both(t, with(sample(prov, dealt, "dealt-2", time.Minute), func(r *Receipt) { r.Outcome = Failed }), prov, dealt))
	if err := g.Gather(ctx, prov.id); err != nil || view().Dealt != 1 {
		t.Fatalf("gathered again within Every: %v, %+v", err, view())
	}
	mu.Lock()
	now = now.Add(11 * time.Minute)
	mu.Unlock()
	if err := g.Gather(ctx, prov.id); err != nil || view().Dealt != 2 {
		t.Fatalf("gathered after Every: %v, %+v", err, view())
	}
}

// A gatherer keeps within the limits a server answers: beyond a peer's
// burst it does not ask, and says so.
func TestGatherRateLimit(t *testing.T) {
	hs := p2ptest.MockHosts(t, 2)
	var mu sync.Mutex
	now := testNow
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	mine := serve(t, hs[0], Limits{}, clock)
	serve(t, hs[1], Limits{}, clock)
	g, err := NewGatherer(GatherConfig{Host: hs[0], Store: mine, Now: clock, Every: time.Second,
		Limits: Limits{Burst: 1, PerMinute: 1}})
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := g.Gather(ctx, hs[1].ID()); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	now = now.Add(2 * time.Second)
	mu.Unlock()
	if err := g.Gather(ctx, hs[1].ID()); err == nil || !strings.Contains(err.Error(), "not asking") {
		t.Fatalf("beyond the burst: %v", err)
	}
	if err := g.Gather(ctx, hs[0].ID()); err != nil {
		t.Fatalf("about itself: %v", err)
	}
}
