package market

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"math/big"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/aixblock/aixblock/p2p"
	"github.com/libp2p/go-libp2p/core/peer"
)

var bidLimits = p2p.StreamLimits{MaxRequest: MaxBidBytes, MaxResponse: 64, Timeout: 5 * time.Second}

// OfferRequest is what a requester asks the market for.
type OfferRequest struct {
	Req         Requirements
	Image       string
	Token       string // address or "native"
	MaxPrice    string // per GPU-hour, base units
	MaxDuration time.Duration
	SpecHash    string // hex SHA-256 of the job spec
	// Exclude are providers not to award (say, ones that failed this job).
	Exclude []string
	// Apart, when set, keeps the deal off providers that share a peer
	// ID, payee wallet or public IP with the providers it holds (a
	// replicated job's other runs, so that one owner under several peer
	// IDs cannot run two of them), and holds the provider of each award.
	// The offers of runs negotiated at once share one.
	Apart *Apart
	// RequireVerified deals only with providers that stand verified by
	// proof of GPU for the class: those this node has not verified are
	// challenged before the offer goes out, and the rest are refused.
	RequireVerified bool
	// HoldbackBps of the pay waits for the result's verification (basis
	// points, at most MaxHoldbackBps); bids must agree to it.
	HoldbackBps int
	// Place, when set, chooses among the bidders of a negotiation for
	// several deals (a distributed job's ranks): see Placer.
	Place Placer
}

// Placer chooses which of the bidders on offer offerID, given best
// first, to award count deals to: it returns them in the order to award,
// the chosen first and the rest as stand-ins for a provider that does
// not confirm; an error refuses every set (the negotiation ends without
// a deal, with it).
type Placer func(ctx context.Context, offerID string, bidders []string, count int) ([]string, error)

// NegotiationStats says how a negotiation went.
type NegotiationStats struct {
	OfferID   string        `json:"offer_id"`
	Found     int           `json:"providers_found"`
	Contacted int           `json:"providers_contacted"`
	Bids      int           `json:"bids"`
	Bidders   []string      `json:"bidders"`
	Awards    int           `json:"awards"`
	Elapsed   time.Duration `json:"elapsed_ns"`
	// Refusals are why providers asked directly did not bid.
	Refusals []Refusal `json:"refusals,omitempty"`
}

// ErrNoDeal means no provider agreed; it is wrapped with why.
var ErrNoDeal = errors.New("no deal")

var errClosed = errors.New("market closed")

// Negotiate finds providers for the requirements, offers the job to the
// best few directly (those it can dial before those behind NAT; more as
// the DHT names them during the bid window) and, when the DHT holds
// fewer than Fanout or named none in time, to everyone by gossip; it
// collects bids for the bid window (or until enough came, or it waits on
// nothing more: see negotiation.waiting), and awards the best bid:
// lowest price, then reputation, then latency. An award the provider
// does not confirm in time goes to the next bid. It returns the deal
// both sides signed.
func (m *Market) Negotiate(ctx context.Context, r OfferRequest) (*Deal, NegotiationStats, error) {
	ds, st, err := m.NegotiateMany(ctx, r, 1)
	if err != nil {
		return nil, st, err
	}
	return ds[0], st, nil
}

// NegotiateMany is Negotiate for up to count deals with different
// providers from one offer and one bid window (a distributed job's node
// ranks), awarded in parallel. It returns at least one deal, fewer than
// count when fewer providers bid; the caller places the rest.
func (m *Market) NegotiateMany(ctx context.Context, r OfferRequest, count int) ([]*Deal, NegotiationStats, error) {
	start := time.Now()
	ph := m.phases()
	count = max(count, 1)
	var st NegotiationStats
	r, err := checkRequest(r)
	if err != nil {
		return nil, st, err
	}
	// Close ends a negotiation under way: it ends without a deal.
	ctx, cancel := m.bound(ctx)
	defer cancel()
	if ctx.Err() != nil {
		return nil, st, errClosed
	}
	// Find providers first: the offer names those it goes to directly.
	targets, unasked, s := m.lookup(ctx, offerClass(r.Req), r)
	defer s.stop()
	ph.mark("lookup")
	if r.RequireVerified {
		var unverified []Refusal
		targets, unverified = m.vetTargets(ctx, targets, r)
		unasked = append(unasked, unverified...)
	}
	s.settle(len(targets), !r.RequireVerified)
	st.Found, st.Contacted = len(targets)+len(unasked), len(targets)
	m.receiptsSeen(targets...)
	if len(targets) == 0 && r.Req.GPUClass != "" {
		// The classes on the network, for an unknown class's reason.
		m.spawn(context.Background(), func(ctx context.Context) { m.refresh(ctx, AnyGPU) })
	}
	now := time.Now()
	o, raw, id, err := m.makeOffer(r, targets, now)
	if err != nil {
		return nil, st, err
	}
	st.OfferID = id
	ph.mark("offer")
	n := m.openNegotiation(ctx, o, raw, id, now)
	defer n.end()
	n.askDirectly(targets)
	n.search = s
	if s.gossip {
		// Only an offer that invites gossip bids is gossiped: where the
		// DHT named a full fanout, providers would ignore its copy, and
		// a copy to every node per deal grows with the network.
		n.gossip(ctx)
	}
	got := n.collect(max(m.cfg.Enough, count))
	s.stop()
	ph.mark("window")
	st.Found, st.Contacted = st.Found+n.late, st.Contacted+n.late
	if r.RequireVerified {
		for _, ref := range m.dropUnverified(got) {
			if !slices.ContainsFunc(unasked, func(u Refusal) bool { return u.Provider == ref.Provider }) {
				unasked = append(unasked, ref)
			}
		}
	}
	st.Refusals = n.refusals(unasked)
	st.Bids = len(got)
	for p := range got {
		st.Bidders = append(st.Bidders, p)
	}
	ranked, err := m.place(ctx, r, id, m.rankBids(got, r.Exclude), count)
	if err != nil {
		m.releaseLosers(got, nil, id)
		return nil, st, fmt.Errorf("%w: %v", ErrNoDeal, err)
	}
	ph.mark("rank")
	deals, winners, awards, apart := m.awardBest(ctx, o, ranked, count, r.Apart)
	ph.mark("award")
	st.Refusals = append(st.Refusals, apart...)
	st.Awards = awards
	st.Elapsed = time.Since(start)
	n.logPhases(ph, got, st)
	if len(deals) == 0 {
		return nil, st, m.noDeal(r, st)
	}
	m.releaseLosers(got, winners, id)
	m.spawn(context.Background(), func(ctx context.Context) {
		m.releaseLate(ctx, n.bids, time.UnixMilli(o.DeadlineMs), winners, id)
	})
	return deals, st, nil
}

// logPhases logs where the negotiation's time went (see phases), with
// its bids' round trips: the first, the last, and how many came.
func (n *negotiation) logPhases(ph *phases, got map[string]receivedBid, st NegotiationStats) {
	if !ph.on {
		return
	}
	var first, last time.Duration
	for _, b := range got {
		if first == 0 || b.latency < first {
			first = b.latency
		}
		last = max(last, b.latency)
	}
	ph.add("first_bid_ms", ms(first))
	ph.add("last_bid_ms", ms(last))
	ph.done("negotiation phases", "offer_id", short(n.id), "contacted", st.Contacted, "bids", st.Bids,
		"gossiped", n.gossiped, "awards", st.Awards)
}

// checkRequest checks r and fills in its defaults.
func checkRequest(r OfferRequest) (OfferRequest, error) {
	if err := r.Req.Validate(); err != nil {
		return r, err
	}
	if r.MaxDuration <= 0 {
		return r, fmt.Errorf("max duration %s: want more than 0", r.MaxDuration)
	}
	if r.Token == "" {
		r.Token = "native"
	}
	if err := checkToken("token", r.Token); err != nil {
		return r, err
	}
	if _, err := parseAmount("max_price", r.MaxPrice); err != nil {
		return r, err
	}
	if r.HoldbackBps < 0 || r.HoldbackBps > MaxHoldbackBps {
		return r, fmt.Errorf("holdback %s: want 0%% to %s", FormatBps(r.HoldbackBps), FormatBps(MaxHoldbackBps))
	}
	if r.RequireVerified && r.Req.GPUs == 0 {
		return r, errors.New("require verified: proof of GPU verifies GPUs, and this job asks for none (drop verified, or ask for GPUs)")
	}
	return r, nil
}

// offerClass is the class whose providers are looked up for req.
func offerClass(req Requirements) string {
	switch {
	case req.GPUClass == "" && req.GPUs > 0:
		return AnyGPU
	case req.GPUs == 0:
		return CPU
	}
	return req.GPUClass
}

// makeOffer writes and signs the offer of r, sent directly to targets,
// with a bid window from now; it returns the offer, its sealed bytes and
// its ID.
func (m *Market) makeOffer(r OfferRequest, targets []peer.ID, now time.Time) (*JobOffer, []byte, string, error) {
	var nonce [8]byte
	rand.Read(nonce[:])
	o := &JobOffer{
		Version: ProtocolVersion, Requester: m.self.String(), Wallet: m.signer.Wallet(), Chain: m.cfg.Chain,
		Req: r.Req, Image: r.Image, Token: r.Token, MaxPrice: r.MaxPrice,
		MaxDurationS: int64(r.MaxDuration / time.Second), SpecHash: r.SpecHash,
		DeadlineMs: now.Add(m.cfg.BidWindow).UnixMilli(), Nonce: binary.BigEndian.Uint64(nonce[:]),
		OpenBids: len(targets) < m.cfg.Fanout, HoldbackBps: r.HoldbackBps,
	}
	for _, p := range targets {
		o.Direct = append(o.Direct, p.String())
	}
	// o.Addrs stays empty: providers reach us by peer ID (see bidBack).
	if err := o.validate(now); err != nil {
		return nil, nil, "", err
	}
	// The wallet signs too: providers reserve GPUs only for a wallet its
	// requester controls (and, checking funds, one that can pay).
	if err := m.signOffer(o); err != nil {
		return nil, nil, "", err
	}
	raw, body, err := seal("offer", o, m.key)
	if err != nil {
		return nil, nil, "", err
	}
	return o, raw, hashID(body), nil
}

// gossipOffer asks the rest of the network to bid, when the DHT was
// thin.
func (m *Market) gossipOffer(ctx context.Context, raw []byte) {
	if err := m.topic.Publish(ctx, raw); err != nil {
		m.log.Warn("offer not gossiped", "err", err)
	} else {
		m.msgsSent.Add(1)
	}
}

// negotiation is one offer's bid window on the requester's side: the
// bids that come for it, directly or by gossip, and why the providers
// asked directly did not bid.
type negotiation struct {
	m    *Market
	o    *JobOffer
	raw  []byte
	id   string
	wctx context.Context // ends with the bid window
	stop context.CancelFunc
	bids chan receivedBid
	// answered has a value for each provider asked directly that
	// answered (or could not be asked), whether it was asked as one
	// behind NAT; pending is how many were asked, pendingNAT how many of
	// them behind NAT.
	answered   chan bool
	pending    int
	pendingNAT int
	refMu      sync.Mutex
	refused    []Refusal

	// search goes on looking for providers while the window is open;
	// late is how many it found, gossiped whether the offer went out
	// by gossip.
	search   *search
	late     int
	gossiped bool
}

// openNegotiation opens the bid window of offer o (ID id, sealed raw),
// opened at now, to bids.
func (m *Market) openNegotiation(ctx context.Context, o *JobOffer, raw []byte, id string, now time.Time) *negotiation {
	n := &negotiation{m: m, o: o, raw: raw, id: id, bids: make(chan receivedBid, 64)}
	m.mu.Lock()
	m.pending[id] = &openOffer{offer: o, start: now, bids: n.bids}
	m.mu.Unlock()
	n.wctx, n.stop = context.WithDeadline(ctx, time.UnixMilli(o.DeadlineMs))
	return n
}

// end closes the bid window: bids that come now are refused (the direct
// ones still on their way go to releaseLate).
func (n *negotiation) end() {
	n.stop()
	n.m.mu.Lock()
	delete(n.m.pending, n.id)
	n.m.mu.Unlock()
}

// askDirectly sends the offer to each target, each answer a bid or a
// refusal.
func (n *negotiation) askDirectly(targets []peer.ID) {
	// Room for the providers found late too: an answer never waits.
	n.answered = make(chan bool, max(len(targets), n.m.cfg.Fanout))
	for _, p := range targets {
		n.start(p)
	}
}

// start asks p in the background, counted as pending until it answers;
// it reports whether it could.
func (n *negotiation) start(p peer.ID) bool {
	nat := n.m.relayed(p)
	if !n.m.spawn(n.wctx, func(ctx context.Context) { n.ask(ctx, p, nat) }) {
		return false
	}
	n.pending++
	if nat {
		n.pendingNAT++
	}
	return true
}

// ask sends the offer to p, and passes on its bid or why it did not bid;
// nat is whether it was asked as a provider behind NAT.
func (n *negotiation) ask(ctx context.Context, p peer.ID, nat bool) {
	defer func() { n.answered <- nat }()
	t0 := time.Now()
	resp, err := n.m.request(ctx, p, protoOffer, n.raw, p2p.StreamLimits{MaxRequest: MaxOfferBytes, MaxResponse: MaxBidBytes})
	var ref *Refusal
	switch {
	case err != nil:
		ref = &Refusal{Provider: p.String(), Reason: whyUnanswered(ctx, err)}
	case envelopeKind(resp) == "nobid":
		nb, err := decodeNoBid(resp, n.id, p)
		if err != nil {
			ref = &Refusal{Provider: p.String(), Reason: "bad answer: " + printable(err.Error())}
		} else {
			r := n.m.refusalOf(nb, n.o)
			ref = &r
		}
	default:
		b, err := n.m.checkBid(resp, n.id, n.o, p)
		if err != nil {
			ref = &Refusal{Provider: p.String(), Reason: "bad bid: " + printable(err.Error())}
			break
		}
		n.bids <- receivedBid{bid: *b, latency: time.Since(t0)}
	}
	if ref != nil {
		n.m.log.Debug("no bid", "peer_id", p, "why", ref.Reason)
		n.refMu.Lock()
		n.refused = append(n.refused, *ref)
		n.refMu.Unlock()
	}
}

// whyUnanswered is why a provider asked directly under ctx gave no
// answer, from the request's error. An older provider says why in an
// error. Otherwise it did not answer in the window, or could not be asked
// at all (no route, a refused stream): say which, since the two call for
// different fixes.
func whyUnanswered(ctx context.Context, err error) string {
	var re *p2p.RemoteError
	switch {
	case errors.As(err, &re):
		return printable(re.Msg)
	case ctx.Err() != nil:
		return "no answer within the bid window"
	default:
		return "could not be asked: " + printable(err.Error())
	}
}

// collect gathers bids, one per provider, until the window ends, want
// bids came, or the window waits on nothing more (see waiting); it asks
// the providers the lookup finds meanwhile. A bid's reservation may end
// before the window (a provider's reserve_for is its own): the awards
// must start in time for it.
func (n *negotiation) collect(want int) map[string]receivedBid {
	got := map[string]receivedBid{}
	lapse := time.NewTimer(time.Hour)
	defer lapse.Stop()
	var firstLapse time.Time
	more := n.search.more
collect:
	for len(got) < want && n.waiting(len(got), more != nil) {
		select {
		case p, ok := <-more:
			if !ok {
				more = nil
				n.lookupEnded()
			} else if n.start(p) {
				n.late++
			}
		case b := <-n.bids:
			if _, dup := got[b.bid.Provider]; !dup {
				got[b.bid.Provider] = b
				n.m.rep.Latency(b.bid.Provider, b.latency)
				at := time.UnixMilli(b.bid.ReservedUntilMs).Add(-n.m.cfg.AwardTimeout)
				if firstLapse.IsZero() || at.Before(firstLapse) {
					firstLapse = at
					lapse.Reset(time.Until(at))
				}
			}
		case nat := <-n.answered:
			n.pending--
			if nat {
				n.pendingNAT--
			}
		case <-lapse.C:
			break collect
		case <-n.wctx.Done():
			break collect
		}
	}
	// A direct bid that was already on its way counts too.
	for {
		select {
		case b := <-n.bids:
			if _, dup := got[b.bid.Provider]; !dup {
				got[b.bid.Provider] = b
			}
		default:
			return got
		}
	}
}

// waiting says whether the window, with bids in, waits on: for gossip
// bids when they are invited, for the lookup while it goes on, and for
// the providers asked directly that have not answered; once a bid came,
// not for those behind NAT alone, which answer late if at all (asked
// only when too few others were found, they still win when no one else
// bids).
func (n *negotiation) waiting(bids int, looking bool) bool {
	switch {
	case n.gossiped || looking:
		return true
	case bids > 0:
		return n.pending > n.pendingNAT
	}
	return n.pending > 0
}

// refusals are why providers did not bid: those not asked (unasked, from
// their adverts) and those asked that refused so far, by provider.
func (n *negotiation) refusals(unasked []Refusal) []Refusal {
	n.refMu.Lock()
	out := append(append([]Refusal(nil), unasked...), n.refused...)
	n.refMu.Unlock()
	sort.Slice(out, func(i, j int) bool { return out[i].Provider < out[j].Provider })
	return out
}

// place orders the ranked bids as r's Placer chooses, when it has one
// and there are several deals to make.
func (m *Market) place(ctx context.Context, r OfferRequest, offerID string, ranked []receivedBid, count int) ([]receivedBid, error) {
	if r.Place == nil || count < 2 || len(ranked) == 0 {
		return ranked, nil
	}
	bidders := make([]string, len(ranked))
	byProvider := make(map[string]receivedBid, len(ranked))
	for i, b := range ranked {
		bidders[i] = b.bid.Provider
		byProvider[b.bid.Provider] = b
	}
	order, err := r.Place(ctx, offerID, bidders, count)
	if err != nil {
		return nil, err
	}
	out := make([]receivedBid, 0, len(order))
	for _, p := range order {
		if b, ok := byProvider[p]; ok {
			out = append(out, b)
			delete(byProvider, p) // each bidder once, whatever the placer says
		}
	}
	return out, nil
}

// awardBest awards the ranked bids, count at a time in parallel; an award
// not confirmed goes to the next bid. It returns the deals, their
// providers, and how many awards were made.
func (m *Market) awardBest(ctx context.Context, o *JobOffer, ranked []receivedBid, count int, apart *Apart) ([]*Deal, map[string]bool, int, []Refusal) {
	var deals []*Deal
	var refused []Refusal
	winners := map[string]bool{}
	awards := 0
	for len(ranked) > 0 && len(deals) < count {
		var wave []receivedBid
		wave, ranked, refused = m.nextWave(ranked, count-len(deals), apart, refused)
		awards += len(wave)
		for _, d := range m.awardWave(ctx, o, wave) {
			if d != nil {
				deals = append(deals, d)
				winners[d.Provider] = true
			}
		}
	}
	return deals, winners, awards, refused
}

// nextWave takes up to n bids from ranked to award at once, passing over
// those apart refuses (it holds the providers of the others), and
// returns the rest and the refusals so far.
func (m *Market) nextWave(ranked []receivedBid, n int, apart *Apart, refused []Refusal) (wave, rest []receivedBid, _ []Refusal) {
	for len(ranked) > 0 && len(wave) < n {
		b := ranked[0]
		ranked = ranked[1:]
		if why := apart.Claim(b.bid.Provider, b.bid.Wallet, PeerIP(m.n.Host, b.bid.Provider)); why != "" {
			m.log.Info("bid refused: the owner runs another run of this job", "provider", b.bid.Provider, "reason", why)
			refused = append(refused, Refusal{Provider: b.bid.Provider, Code: RefusedApart, Reason: why})
			continue
		}
		wave = append(wave, b)
	}
	return wave, ranked, refused
}

// awardWave awards each bid of wave at once; a deal is nil where its
// provider did not confirm.
func (m *Market) awardWave(ctx context.Context, o *JobOffer, wave []receivedBid) []*Deal {
	awarded := make([]*Deal, len(wave))
	var wg sync.WaitGroup
	for i := range wave {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			d, err := m.award(ctx, o, &wave[i].bid)
			if err != nil {
				m.log.Info("award not confirmed; trying the next bid", "provider", wave[i].bid.Provider, "err", err)
				m.rep.NoShow(wave[i].bid.Provider)
				return
			}
			awarded[i] = d
		}(i)
	}
	wg.Wait()
	return awarded
}

// noDeal is why a negotiation of r that went as st made no deal.
func (m *Market) noDeal(r OfferRequest, st NegotiationStats) error {
	if st.Bids > 0 {
		return fmt.Errorf("%w: %d bids, none confirmed its award", ErrNoDeal, st.Bids)
	}
	why := fmt.Sprintf("no provider bid within %s (%d found, %d asked directly)", m.cfg.BidWindow, st.Found, st.Contacted)
	if st.Found == 0 {
		if u := m.unknownClass(r.Req.GPUClass); u != "" {
			why += ": " + u
		}
	}
	for i, rf := range st.Refusals {
		if i == 0 {
			why += ": "
		} else {
			why += "; "
		}
		why += rf.String()
	}
	return fmt.Errorf("%w: %s", ErrNoDeal, why)
}

// lookup names up to Fanout providers for the request. Providers whose
// adverts this node holds and that could serve it come first, those that
// can be dialled before those behind NAT, then cheapest first: when there are enough, no DHT query delays the offer (the cache
// is refreshed in the background). Otherwise the DHT names more, as they
// come, those behind NAT after the rest, and the search goes on (see
// search). Excluded providers, and ones with a poor record unless there
// are no others, are left out.
func (m *Market) lookup(ctx context.Context, class string, r OfferRequest) ([]peer.ID, []Refusal, *search) {
	skip := map[string]bool{m.self.String(): true}
	for _, e := range append(r.Exclude, r.Apart.Peers()...) {
		skip[e] = true
	}
	out, refused := m.cachedCandidates(class, r, skip)
	m.spawn(context.Background(), func(ctx context.Context) { m.refreshRepeat(ctx, class) })
	if len(out) >= m.cfg.Fanout {
		return out[:m.cfg.Fanout], refused, &search{m: m, stop: func() {}}
	}
	for _, p := range out {
		skip[p.String()] = true
	}
	s := m.searchProviders(ctx, class, r, skip, len(out))
	out = append(out, s.found...)
	// Those behind NAT next (the rest wait for the lookup's end, see
	// follow), then those with a poor record.
	n := min(len(s.relayed), max(m.cfg.Fanout-len(out), 0))
	out, s.relayed = append(out, s.relayed[:n]...), s.relayed[n:]
	for _, p := range s.poor {
		if len(out) < m.cfg.Fanout {
			out = append(out, p)
		}
	}
	return out, append(refused, s.refuse...), s
}

// advertRefusal is a refusal the requester reads from a provider's
// advert without asking it.
func (m *Market) advertRefusal(a *ProviderAdvert, nb *NoBid, r OfferRequest) Refusal {
	nb.Provider = a.PeerID
	ref := m.refusalOf(nb, &JobOffer{Token: r.Token, MaxPrice: r.MaxPrice})
	ref.Reason += " (from its advert)"
	return ref
}

// cachedCandidates are the providers of class in the advert cache that
// could serve r, those that can be dialled before those behind NAT, then
// cheapest first, then by proof of GPU, receipts and reputation, and why
// the others of the class could not.
func (m *Market) cachedCandidates(class string, r OfferRequest, skip map[string]bool) ([]peer.ID, []Refusal) {
	type cand struct {
		id    peer.ID
		price *big.Int
		score float64
		proof int     // ProofStanding.tier
		rcpt  float64 // ReceiptHook.Score
		nat   bool    // Market.relayed
	}
	var cs []cand
	var refused []Refusal
	var cannot []struct {
		a  *ProviderAdvert
		nb *NoBid
	}
	now := time.Now().UnixMilli()
	m.mu.Lock()
	for _, a := range m.adverts {
		if skip[a.PeerID] || now > a.ExpiresAtMs {
			continue
		}
		if class != AnyGPU && class != CPU && !a.hasClass(class) {
			continue
		}
		if nb := a.whyNot(r); nb != nil {
			skip[a.PeerID] = true // not asked, not looked up again
			cannot = append(cannot, struct {
				a  *ProviderAdvert
				nb *NoBid
			}{a, nb})
			continue
		}
		id, err := peer.Decode(a.PeerID)
		if err != nil {
			continue
		}
		var price *big.Int
		for _, p := range a.Prices {
			if p.Token == r.Token {
				price, _ = parseAmount("price", p.PerGPUHour)
			}
		}
		cs = append(cs, cand{id: id, price: price})
	}
	m.mu.Unlock()
	for _, c := range cannot {
		refused = append(refused, m.advertRefusal(c.a, c.nb, r))
	}
	for i := range cs {
		cs[i].score = m.rep.Get(cs[i].id.String()).Score()
		cs[i].proof = m.standing(cs[i].id.String(), class).tier()
		cs[i].rcpt = m.receiptScore(cs[i].id.String())
		cs[i].nat = m.relayed(cs[i].id)
	}
	sort.Slice(cs, func(i, j int) bool {
		if fi, fj := cs[i].proof == 2, cs[j].proof == 2; fi != fj {
			return fj // a provider caught lying about its GPUs comes last
		}
		if cs[i].nat != cs[j].nat {
			return cs[j].nat
		}
		if c := cs[i].price.Cmp(cs[j].price); c != 0 {
			return c < 0
		}
		if cs[i].proof != cs[j].proof {
			return cs[i].proof < cs[j].proof
		}
		if cs[i].rcpt != cs[j].rcpt {
			return cs[i].rcpt > cs[j].rcpt
		}
		if cs[i].score != cs[j].score {
			return cs[i].score > cs[j].score
		}
		return cs[i].id < cs[j].id
	})
	out := make([]peer.ID, 0, len(cs))
	for _, c := range cs {
		if c.score >= 0.25 {
			out = append(out, c.id)
		}
	}
	return out, refused
}

// refresh re-reads the adverts of class from the DHT into the cache, at
// most once per refreshEvery per class.
func (m *Market) refresh(ctx context.Context, class string) {
	m.mu.Lock()
	if time.Since(m.refreshed[class]) < refreshEvery {
		m.mu.Unlock()
		return
	}
	m.refreshed[class] = time.Now()
	m.mu.Unlock()
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	// A few more than the fanout, each advert from the first holders that
	// answer: the value searches of every advert of a class would grow
	// with the network, and the cache needs the cheapest few.
	if _, err := m.findProviders(ctx, class, refreshLimit*m.cfg.Fanout, firstAnswers); err != nil {
		m.log.Debug("refresh adverts", "class", class, "err", err)
	}
}

const (
	refreshEvery = 30 * time.Second
	refreshLimit = 2 // adverts per refresh, in fanouts
)

// whyNot is why the advert's provider could not bid on r, as the advert
// tells; nil when it could.
func (a *ProviderAdvert) whyNot(r OfferRequest) *NoBid {
	if r.Req.GPUs > 0 {
		free := 0
		for _, g := range a.GPUs {
			if (r.Req.GPUClass == "" || g.Class == r.Req.GPUClass) && g.MemoryMiB >= r.Req.GPUMemoryMiB && g.Free > free {
				free = g.Free
			}
		}
		if free < r.Req.GPUs {
			return &NoBid{Code: NoBidGPUs, Detail: fmt.Sprintf("need %d free healthy %s GPUs, %d free in its advert", r.Req.GPUs, orAny(r.Req.GPUClass), free)}
		}
	}
	switch {
	case r.Req.CPUCores > a.CPUCores:
		return &NoBid{Code: NoBidCPU, Detail: fmt.Sprintf("need %d CPU cores, %d in its advert", r.Req.CPUCores, a.CPUCores)}
	case r.Req.MemoryMiB > a.MemoryMiB:
		return &NoBid{Code: NoBidMemory, Detail: fmt.Sprintf("need %d MiB of memory, %d MiB in its advert", r.Req.MemoryMiB, a.MemoryMiB)}
	}
	maxPrice, _ := parseAmount("max_price", r.MaxPrice)
	var toks []string
	for _, p := range a.Prices {
		if p.Token == r.Token {
			price, err := parseAmount("price", p.PerGPUHour)
			if err != nil {
				return &NoBid{Code: NoBidDeclined, Detail: "its advert's price does not parse"}
			}
			if price.Cmp(maxPrice) > 0 {
				class := r.Req.GPUClass
				if r.Req.GPUs == 0 {
					class = CPU
				}
				for _, g := range a.GPUs {
					if class == "" && g.Free >= r.Req.GPUs {
						class = g.Class // the class it would have bid with
					}
				}
				return &NoBid{Code: NoBidPrice, Class: class, Floor: price.String()}
			}
			return nil
		}
		toks = append(toks, p.Token)
	}
	return &NoBid{Code: NoBidToken, Detail: fmt.Sprintf("token %s not accepted (its advert prices %s)", r.Token, strings.Join(toks, ", "))}
}

// releaseLosers tells the other bidders their reservations can go, so that
// GPUs are not held for offers that went elsewhere.
func (m *Market) releaseLosers(got map[string]receivedBid, winners map[string]bool, offerID string) {
	for p := range got {
		if winners[p] {
			continue
		}
		id, err := peer.Decode(p)
		if err != nil {
			continue
		}
		m.spawn(context.Background(), func(ctx context.Context) {
			ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			defer cancel()
			if _, err := m.request(ctx, id, protoFree, []byte(offerID), p2p.StreamLimits{MaxRequest: 128, MaxResponse: 64}); err != nil {
				m.log.Debug("release", "peer_id", id, "err", err)
			}
		})
	}
}

// releaseLate releases the reservations of direct bids that arrive after
// the award.
func (m *Market) releaseLate(ctx context.Context, bids <-chan receivedBid, deadline time.Time, winners map[string]bool, offerID string) {
	t := time.NewTimer(time.Until(deadline) + 5*time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case b := <-bids:
			if !winners[b.bid.Provider] {
				m.releaseLosers(map[string]receivedBid{b.bid.Provider: b}, winners, offerID)
			}
		case <-t.C:
			return
		}
	}
}

// rankBids orders bids: a provider that failed proof of GPU last; then
// lowest price, then verified before unverified, then the best score
// from receipts, then best reputation, then fastest.
func (m *Market) rankBids(got map[string]receivedBid, exclude []string) []receivedBid {
	skip := map[string]bool{}
	for _, e := range exclude {
		skip[e] = true
	}
	var out []receivedBid
	for p, b := range got {
		if !skip[p] {
			out = append(out, b)
		}
	}
	tier := make(map[string]int, len(out))
	rcpt := make(map[string]float64, len(out))
	for _, b := range out {
		tier[b.bid.Provider] = m.standing(b.bid.Provider, b.bid.GPUClass).tier()
		rcpt[b.bid.Provider] = m.receiptScore(b.bid.Provider)
	}
	sort.Slice(out, func(i, j int) bool {
		ti, tj := tier[out[i].bid.Provider], tier[out[j].bid.Provider]
		if fi, fj := ti == 2, tj == 2; fi != fj {
			return fj
		}
		pi, _ := parseAmount("price", out[i].bid.Price)
		pj, _ := parseAmount("price", out[j].bid.Price)
		if c := pi.Cmp(pj); c != 0 {
			return c < 0
		}
		if ti != tj {
			return ti < tj
		}
		if ri, rj := rcpt[out[i].bid.Provider], rcpt[out[j].bid.Provider]; ri != rj {
			return ri > rj
		}
		si, sj := m.rep.Get(out[i].bid.Provider).Score(), m.rep.Get(out[j].bid.Provider).Score()
		if si != sj {
			return si > sj
		}
		if out[i].latency != out[j].latency {
			return out[i].latency < out[j].latency
		}
		return out[i].bid.Provider < out[j].bid.Provider
	})
	return out
}

// checkBid opens a bid and checks it answers o from provider p.
func (m *Market) checkBid(raw []byte, offerID string, o *JobOffer, p peer.ID) (*Bid, error) {
	var b Bid
	if _, err := open("bid", raw, MaxBidBytes, &b); err != nil {
		return nil, err
	}
	if err := b.validate(time.Now()); err != nil {
		return nil, err
	}
	switch {
	case b.OfferID != offerID:
		return nil, bad("bid for offer %s, not %s", short(b.OfferID), short(offerID))
	case b.Provider != p.String():
		return nil, bad("bid of %s sent by %s", b.Provider, p)
	case b.Token != o.Token:
		return nil, bad("bid in token %s, offer in %s", b.Token, o.Token)
	case len(b.GPUs) != o.Req.GPUs:
		return nil, bad("bid of %d GPUs for an offer of %d", len(b.GPUs), o.Req.GPUs)
	case o.Req.GPUClass != "" && b.GPUClass != o.Req.GPUClass:
		return nil, bad("bid of %s GPUs for an offer of %s", b.GPUClass, o.Req.GPUClass)
	case b.HoldbackBps != o.HoldbackBps:
		// A bid that does not agree to the holdback would be paid it all.
		return nil, bad("bid agrees to hold back %s of its pay, the offer asks %s", FormatBps(b.HoldbackBps), FormatBps(o.HoldbackBps))
	}
	price, _ := parseAmount("price", b.Price)
	maxPrice, _ := parseAmount("max_price", o.MaxPrice)
	if price.Cmp(maxPrice) > 0 {
		return nil, bad("bid price %s over the offer's %s", price, maxPrice)
	}
	return &b, nil
}

// handleBid takes a bid for one of our open offers (a provider that heard
// the offer by gossip).
func (m *Market) handleBid(ctx context.Context, from peer.ID, req []byte) ([]byte, error) {
	var peek Bid
	if _, err := open("bid", req, MaxBidBytes, &peek); err != nil {
		return nil, err
	}
	m.mu.Lock()
	oo := m.pending[peek.OfferID]
	m.mu.Unlock()
	if oo == nil {
		return nil, bad("no open offer %s", short(peek.OfferID))
	}
	b, err := m.checkBid(req, peek.OfferID, oo.offer, from)
	if err != nil {
		return nil, err
	}
	select {
	case oo.bids <- receivedBid{bid: *b, latency: time.Since(oo.start)}:
	default:
	}
	return []byte("ok"), nil
}

// award signs the deal for bid b and asks the provider to countersign.
func (m *Market) award(ctx context.Context, o *JobOffer, b *Bid) (*Deal, error) {
	ph := m.phases()
	t := termsFor(o, b)
	if err := t.computeID(); err != nil {
		return nil, err
	}
	sig, err := m.signer.SignDeal(t)
	if err != nil {
		return nil, err
	}
	ph.mark("sign")
	d := Deal{DealTerms: t, RequesterSig: sig}
	raw, err := canonical(d)
	if err != nil {
		return nil, err
	}
	p, err := peer.Decode(b.Provider)
	if err != nil {
		return nil, err
	}
	actx, cancel := context.WithTimeout(ctx, m.cfg.AwardTimeout)
	defer cancel()
	resp, err := m.request(actx, p, protoAward, raw, p2p.StreamLimits{MaxRequest: MaxDealBytes, MaxResponse: MaxDealBytes, Timeout: m.cfg.AwardTimeout})
	if err != nil {
		return nil, err
	}
	ph.mark("confirm")
	var got Deal
	if len(resp) > MaxDealBytes {
		return nil, bad("confirmed deal over %d bytes", MaxDealBytes)
	}
	if err := codec.Unmarshal(resp, &got); err != nil {
		return nil, bad("confirmed deal: %v", err)
	}
	if !sameTerms(got.DealTerms, t) {
		return nil, bad("provider changed the deal's terms")
	}
	if err := m.signer.VerifyDeal(t, got.ProviderSig, b.Wallet); err != nil {
		return nil, bad("provider signature: %v", err)
	}
	d.ProviderSig = got.ProviderSig
	ph.mark("verify")
	ph.done("award phases", "offer_id", short(b.OfferID), "provider", b.Provider)
	return &d, nil
}
