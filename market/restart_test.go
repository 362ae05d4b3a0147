package market

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/aixblock/aixblock/p2p/p2ptest"
)

// liveJobs stands in for the daemon's job records, which outlive a
// restart: the GPUs each live job holds.
type liveJobs struct {
	mu   sync.Mutex
	gpus map[string][]string
}

func (l *liveJobs) Busy() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for _, g := range l.gpus {
		out = append(out, g...)
	}
	return out
}

func (l *liveJobs) run(id string, gpus []string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.gpus == nil {
		l.gpus = map[string][]string{}
	}
	l.gpus[id] = slices.Clone(gpus)
}

func (l *liveJobs) end(id string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.gpus, id)
}

// restartProvider kills old's daemon and starts it again on the same
// identity and GPUs, with a market that remembers nothing; it is
// connected to peers but its market is not running yet.
func restartProvider(t *testing.T, old *tnode, cfg Config, peers ...*tnode) *tnode {
	t.Helper()
	key := old.p2p.Host.Peerstore().PrivKey(old.p2p.Host.ID())
	old.p2p.Close()
	pc := testP2PConfig(old.p2p.Network())
	pc.Identity = key
	pn := p2ptest.New(t, pc)
	c := cfg
	c.Prices = old.m.cfg.Prices
	n := newTnode(t, pn, old.gpus, c)
	n.gpus, n.signer = old.gpus, old.signer
	for _, p := range peers {
		p2ptest.Connect(t, p.p2p, pn)
	}
	return n
}

// A provider's daemon restarts while a tenant's 8-GPU job runs on it (the
// job is reattached; the market's holds are gone with the old process).
// A second tenant asks for the same GPUs right after the restart, before
// the market runs and after: no bid, and the advert shows none free.
// When the job ends they are for rent again.
func TestRestartedProviderDoesNotRerentGPUsInUse(t *testing.T) {
	jobs := &liveJobs{}
	cfg := Config{ReserveFor: 10 * time.Second, Busy: jobs.Busy}
	nodes := startMarket(t, "marketrestart", []nodeSpec{
		{"dgxh100", map[string]string{h100: "1000"}},
		{"", nil}, // the first tenant
		{"", nil}, // the second
	}, cfg)
	prov, first, second := nodes[0], nodes[1], nodes[2]

	var off JobOffer
	b, nb := hostileOffer(t, first, prov, time.Now(), func(o *JobOffer) { o.Req.GPUs = 8; off = *o })
	if nb != nil {
		t.Fatalf("first tenant: %+v", nb)
	}
	d, err := first.m.award(t.Context(), &off, b)
	if err != nil {
		t.Fatal(err)
	}
	if err := prov.m.Claim(d.ID); err != nil {
		t.Fatal(err)
	}
	jobs.run("job-1", d.GPUs)
	prov.m.Started(d.ID)
	if _, nb := hostileOffer(t, second, prov, time.Now(), func(o *JobOffer) { o.Req.GPUs = 8 }); nb == nil || nb.Code != NoBidGPUs {
		t.Fatalf("second tenant before the restart: %+v", nb)
	}

	prov = restartProvider(t, prov, cfg, first, second)
	eight := func(o *JobOffer) { o.Req.GPUs = 8 }
	if b, nb := hostileOffer(t, second, prov, time.Now(), eight); b != nil {
		t.Fatalf("right after the restart, before the market runs: a bid for %d GPUs in use", len(b.GPUs))
	} else if nb.Code != NoBidGPUs {
		t.Fatalf("right after the restart: %+v", nb)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	go prov.m.Run(ctx)
	<-prov.m.ready
	if b, nb := hostileOffer(t, second, prov, time.Now().Add(1), eight); b != nil {
		t.Fatalf("after the restart: a bid for %d GPUs in use", len(b.GPUs))
	} else if nb.Code != NoBidGPUs {
		t.Fatalf("after the restart: %+v", nb)
	}
	if b, _ := hostileOffer(t, second, prov, time.Now().Add(2), nil); b != nil {
		t.Fatalf("after the restart: a bid for GPU %v, in use", b.GPUs)
	}
	if f := freeH100(prov, time.Now()); f != 0 {
		t.Fatalf("the advert after the restart shows %d GPUs free, all 8 are in use", f)
	}

	jobs.end("job-1")
	if b, nb := hostileOffer(t, second, prov, time.Now().Add(3), eight); b == nil {
		t.Fatalf("after the job ended: %+v", nb)
	}
}

// A requester gives up a deal it could not fund (ReleaseUnstarted): the
// GPUs go back at once. Racing its own start, it cannot free GPUs a
// claimed start runs on: the release checks "unstarted" in the same lock.
func TestReleaseUnstarted(t *testing.T) {
	nodes := startMarket(t, "marketrelease", []nodeSpec{
		{"dgxh100", map[string]string{h100: "1000"}},
		{"", nil},
	}, Config{ReserveFor: 10 * time.Second})
	prov, req := nodes[0], nodes[1]
	deal := func() *Deal {
		t.Helper()
		var off JobOffer
		b, nb := hostileOffer(t, req, prov, time.Now(), func(o *JobOffer) { o.Req.GPUs = 8; off = *o })
		if nb != nil {
			t.Fatalf("no bid: %+v", nb)
		}
		d, err := req.m.award(t.Context(), &off, b)
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	d := deal()
	if !prov.m.ReleaseUnstarted(d.ID) {
		t.Fatal("an unstarted deal was not released")
	}
	d = deal() // all 8 GPUs are free again
	if err := prov.m.Claim(d.ID); err != nil {
		t.Fatal(err)
	}
	if prov.m.ReleaseUnstarted(d.ID) {
		t.Fatal("a claimed deal was released: its GPUs would be rented twice")
	}
	if _, nb := hostileOffer(t, req, prov, time.Now().Add(1), func(o *JobOffer) { o.Req.GPUs = 8 }); nb == nil || nb.Code != NoBidGPUs {
		t.Fatalf("GPUs of a claimed deal bid again: %+v", nb)
	}
}
