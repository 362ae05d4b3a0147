package lease

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/aixblock/aixblock/node/api"
	"github.com/aixblock/aixblock/p2p/overlay"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/p2p/protocol/ping"
)

// Placement of a distributed job's ranks where they reach each other
// directly. Before it awards, the requester asks each bidder how it
// reaches the others (jobs/reach/1): each dials the others without a
// relay and times a round trip. The requester then awards the best-ranked
// set whose every pair is direct; where there is none it awards the best
// bids as they come, and says so in the job's status. A spec's relay:
// deny is held by the gang's own path check, after hole punching: a
// pair that cannot dial each other directly may still punch through. A bidder
// that lies about its paths gains nothing: the gang start checks the
// paths the ranks really take.

// maxReachPeers bounds the peers one reach request names: a bidder
// dials at most this many for a requester, once per offer it bid on.
const maxReachPeers = 16

// reachTimeout bounds a placement's probes: the bids' reservations
// (market.reserve_for, 10 s by default) run meanwhile.
const reachTimeout = 3 * time.Second

// reachRequest asks a bidder on OfferID how it reaches Peers.
type reachRequest struct {
	OfferID string   `json:"offer_id"`
	Peers   []string `json:"peers"`
}

// handleReach is the provider's side: a requester it bid for asks how it
// reaches the other bidders. It dials each without a relay and pings it.
func (pv *Provider) handleReach(ctx context.Context, from peer.ID, raw []byte) ([]byte, error) {
	var req reachRequest
	if err := json.Unmarshal(raw, &req); err != nil {
		return nil, fmt.Errorf("reach request: %w", err)
	}
	switch {
	case len(req.Peers) > maxReachPeers:
		return nil, fmt.Errorf("reach request names %d peers: at most %d", len(req.Peers), maxReachPeers)
	case pv.market == nil || !pv.market.BidFor(req.OfferID, from.String()):
		return nil, fmt.Errorf("no bid of this provider on offer %s of yours: it reaches peers only for a requester it bid for", short(req.OfferID))
	}
	ids := make([]peer.ID, 0, len(req.Peers))
	for _, s := range req.Peers {
		id, err := peer.Decode(s)
		if err != nil {
			return nil, fmt.Errorf("reach request: peer %q: %w", short(s), err)
		}
		ids = append(ids, id)
	}
	ctx, cancel := context.WithTimeout(ctx, reachTimeout)
	defer cancel()
	return json.Marshal(pv.reachEach(ctx, ids))
}

// reachEach dials and pings each peer at once; it reports by peer ID.
func (pv *Provider) reachEach(ctx context.Context, ids []peer.ID) map[string]api.PairReach {
	out := map[string]api.PairReach{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, id := range ids {
		if id == pv.p2p.Host.ID() {
			continue
		}
		wg.Go(func() {
			r := pv.reachOne(ctx, id)
			mu.Lock()
			out[id.String()] = r
			mu.Unlock()
		})
	}
	wg.Wait()
	return out
}

// reachOne connects to p without a relay where it can and times a round
// trip over the path it has.
func (pv *Provider) reachOne(ctx context.Context, p peer.ID) api.PairReach {
	h := pv.p2p.Host
	if overlay.Path(h, p) != "direct" {
		pv.reach(ctx, p)
		if overlay.Path(h, p) != "direct" {
			h.Connect(ctx, peer.AddrInfo{ID: p}) // a direct dial; a relayed connection stays as it is
		}
	}
	r := api.PairReach{B: p.String(), Path: overlay.Path(h, p)}
	if r.Path == "" {
		r.Path = "unreachable"
		return r
	}
	select {
	case res := <-ping.Ping(network.WithAllowLimitedConn(ctx, "placement"), h, p):
		if res.Error == nil {
			r.RTTMs = float64(res.RTT.Microseconds()) / 1000
		}
	case <-ctx.Done():
	}
	return r
}

// placer chooses a distributed job's providers among the bidders where
// they reach each other directly (see Placement); deny refuses the sets
// that do not. What it measured is kept in *got for the job's status.
func (rq *Requester) placer(deny bool, got *api.Placement) func(ctx context.Context, offerID string, bidders []string, count int) ([]string, error) {
	return func(ctx context.Context, offerID string, bidders []string, count int) ([]string, error) {
		ctx, cancel := context.WithTimeout(ctx, reachTimeout+time.Second)
		defer cancel()
		pairs := rq.probe(ctx, offerID, bidders)
		set, ok := chooseDirect(bidders, count, func(a, b string) bool { return pairs[pairKey(a, b)].Path == "direct" })
		*got = api.Placement{Direct: ok, Pairs: sortedPairs(pairs)}
		switch {
		case ok:
			got.Note = fmt.Sprintf("the %d providers chosen of %d bidders reach each other directly", count, len(bidders))
		default:
			// A pair with no direct dial may still punch a hole once both
			// join the job network: the gang's start measures the paths
			// then, and holds relay: deny to them.
			got.Note = fmt.Sprintf("no %d of the %d bidders reach each other by a direct dial: the best bids were taken (%s)", count, len(bidders), notDirect(got.Pairs))
			if deny {
				got.Note += "; relay: deny is checked once the ranks have tried to punch through"
			}
			set = bidders[:min(count, len(bidders))]
		}
		rq.log.Info("distributed job placed", "offer_id", short(offerID), "direct", ok, "providers", len(set), "bidders", len(bidders))
		return append(set, without(bidders, set)...), nil
	}
}

// probe asks each bidder how it reaches the others, at once; a bidder
// that does not answer reaches no one as far as placement knows.
func (rq *Requester) probe(ctx context.Context, offerID string, bidders []string) map[string]api.PairReach {
	pairs := map[string]api.PairReach{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, b := range bidders {
		id, err := peer.Decode(b)
		if err != nil {
			continue
		}
		others := without(bidders, []string{b})
		if len(others) > maxReachPeers {
			others = others[:maxReachPeers]
		}
		wg.Go(func() {
			raw, _ := json.Marshal(reachRequest{OfferID: offerID, Peers: others})
			resp, err := rq.request(ctx, id, wireReach, raw)
			var got map[string]api.PairReach
			if err == nil {
				err = json.Unmarshal(resp, &got)
			}
			if err != nil {
				rq.log.Debug("placement: a bidder did not say how it reaches the others", "provider", b, "err", err)
				return
			}
			mu.Lock()
			defer mu.Unlock()
			for _, o := range others {
				r, ok := got[o]
				if !ok {
					continue
				}
				k := pairKey(b, o)
				// Either side's direct connection is both sides': keep
				// the better report, and the shorter round trip.
				if old, seen := pairs[k]; !seen || (r.Path == "direct" && old.Path != "direct") {
					a, c := orderPair(b, o)
					pairs[k] = api.PairReach{A: a, B: c, Path: r.Path, RTTMs: r.RTTMs}
				}
			}
		})
	}
	wg.Wait()
	return pairs
}

// chooseDirect is the best-ranked count of bidders (best first) whose
// every pair is direct: the set whose ranks, in order, come first.
func chooseDirect(bidders []string, count int, direct func(a, b string) bool) ([]string, bool) {
	if count > len(bidders) {
		return nil, false
	}
	var set []string
	steps := 0
	var dfs func(from int) bool
	dfs = func(from int) bool {
		if len(set) == count {
			return true
		}
		for i := from; i <= len(bidders)-(count-len(set)) && steps < 1e5; i++ {
			steps++
			ok := true
			for _, s := range set {
				if !direct(s, bidders[i]) {
					ok = false
					break
				}
			}
			if !ok {
				continue
			}
			set = append(set, bidders[i])
			if dfs(i + 1) {
				return true
			}
			set = set[:len(set)-1]
		}
		return false
	}
	if !dfs(0) {
		return nil, false
	}
	return set, true
}

func orderPair(a, b string) (string, string) {
	if a > b {
		return b, a
	}
	return a, b
}

func pairKey(a, b string) string {
	a, b = orderPair(a, b)
	return a + "|" + b
}

func sortedPairs(m map[string]api.PairReach) []api.PairReach {
	out := make([]api.PairReach, 0, len(m))
	for _, p := range m {
		out = append(out, p)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].A+out[i].B < out[j].A+out[j].B })
	return out
}

// notDirect names the pairs measured without a direct path.
func notDirect(pairs []api.PairReach) string {
	var bad []string
	for _, p := range pairs {
		if p.Path != "direct" {
			bad = append(bad, fmt.Sprintf("%s–%s %s", short(p.A), short(p.B), p.Path))
		}
	}
	if len(bad) == 0 {
		return "some bidders did not say how they reach the others"
	}
	return strings.Join(bad, ", ")
}

// without is list less drop, in order.
func without(list, drop []string) []string {
	var out []string
	for _, s := range list {
		skip := false
		for _, d := range drop {
			skip = skip || s == d
		}
		if !skip {
			out = append(out, s)
		}
	}
	return out
}
