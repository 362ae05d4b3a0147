package market

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"os/exec"
	"path"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/aixblock/aixblock/gpu"
	pubsub "github.com/libp2p/go-libp2p-pubsub"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
)

func validatePrices(prices map[string]map[string]string) error {
	for class, byToken := range prices {
		if class != "*" && !classRE.MatchString(class) {
			return fmt.Errorf("market.prices: class %q: want a class key such as nvidia-h100-80gb, cpu or *", class)
		}
		for tok, p := range byToken {
			if err := checkToken("market.prices["+class+"] token", tok); err != nil {
				return err
			}
			if _, err := parseAmount("market.prices["+class+"]["+tok+"]", p); err != nil {
				return err
			}
		}
	}
	return nil
}

// decodeOffer opens and validates an offer from the network.
func decodeOffer(raw []byte, now time.Time) (*JobOffer, string, error) {
	var o JobOffer
	body, err := open("offer", raw, MaxOfferBytes, &o)
	if err != nil {
		return nil, "", err
	}
	if err := o.validate(now); err != nil {
		return nil, "", err
	}
	return &o, hashID(body), nil
}

// validateGossipOffer is the offers topic's validator: unsigned, expired,
// oversized, malformed and duplicate offers are rejected (the sender loses
// score) before any state changes.
func (m *Market) validateGossipOffer(ctx context.Context, from peer.ID, msg *pubsub.Message) pubsub.ValidationResult {
	o, _, err := decodeOffer(msg.Data, m.now())
	if err != nil {
		m.log.Debug("offer rejected", "from", from, "err", err)
		return pubsub.ValidationReject
	}
	// An offer must come from its requester, not be relayed under
	// another's name.
	if msg.GetFrom().String() != o.Requester {
		return pubsub.ValidationReject
	}
	return pubsub.ValidationAccept
}

func (m *Market) readOffers(ctx context.Context) {
	for {
		msg, err := m.sub.Next(ctx)
		if err != nil {
			return
		}
		if msg.ReceivedFrom == m.self {
			continue
		}
		o, id, err := decodeOffer(msg.Data, m.now())
		if err != nil || o.Requester == m.self.String() || !o.OpenBids || slices.Contains(o.Direct, m.self.String()) {
			continue
		}
		m.spawn(ctx, func(ctx context.Context) { m.bidBack(ctx, o, id) })
	}
}

// bidBack answers a gossiped offer with a bid over a direct stream to the
// requester's peer ID. The offer's own addresses are never dialled: they
// are whatever its signer wrote, and dialling them would let anyone make
// every provider on the network connect to a victim. The requester is
// reached over a connection we already have, or at the addresses the DHT
// knows for its peer ID (and libp2p checks the peer ID on connect).
func (m *Market) bidBack(ctx context.Context, o *JobOffer, id string) {
	raw, err := m.bid(o, id, m.phases())
	if err != nil {
		return
	}
	rp, err := peer.Decode(o.Requester)
	if err != nil {
		m.dropBid(id)
		return
	}
	cctx, cancel := context.WithDeadline(ctx, time.UnixMilli(o.DeadlineMs))
	defer cancel()
	h := m.n.Host
	if h.Network().Connectedness(rp) != network.Connected && len(h.Peerstore().Addrs(rp)) == 0 {
		ai, err := m.n.DHT.FindPeer(cctx, rp)
		if err != nil {
			m.log.Debug("bid not delivered: requester not found", "offer_id", short(id), "err", err)
			m.dropBid(id)
			return
		}
		h.Peerstore().AddAddrs(rp, ai.Addrs, time.Minute)
	}
	if _, err := m.request(cctx, rp, protoBid, raw, bidLimits); err != nil {
		// The requester did not take it (the window closed, or it is
		// gone): the reservation goes now rather than when it lapses.
		m.log.Debug("bid not delivered", "offer_id", short(id), "err", err)
		m.dropBid(id)
	}
}

// dropBid frees the reservation of an unawarded bid.
func (m *Market) dropBid(id string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.awarded(id) {
		return
	}
	for u, h := range m.held {
		if h.offerID == id && h.dealID == "" {
			delete(m.held, u)
		}
	}
	delete(m.bids, id)
}

// handleOffer answers an offer sent straight to us with a bid, or with a
// signed NoBid that says why not.
func (m *Market) handleOffer(ctx context.Context, from peer.ID, req []byte) ([]byte, error) {
	ph := m.phases()
	o, id, err := decodeOffer(req, m.now())
	if err != nil {
		return nil, err
	}
	if o.Requester != from.String() {
		return nil, bad("offer of %s sent by %s", o.Requester, from)
	}
	ph.mark("decode")
	raw, err := m.bid(o, id, ph)
	defer ph.done("bid phases", "offer_id", short(id), "requester", o.Requester)
	var r *refusal
	if errors.As(err, &r) {
		m.log.Debug("no bid", "offer_id", short(id), "requester", o.Requester, "code", r.code, "why", r.Error())
		return sealNoBid(id, m.self, r, m.key)
	}
	return raw, err
}

// decideBid runs the bid engine: the offer against the reservation limits
// (the requester's peer ID, its wallet, this provider's budget), free
// healthy GPUs, host resources, accepted images and tokens, the price
// floor, and, before anything is reserved, whether the requester controls
// the wallet it names and that wallet can pay (Config.Funds). On a match
// it reserves the GPUs for at most ReserveFor, whatever the offer's
// deadline, and returns the signed bid. A refusal is a *refusal. An offer
// is bid on once, however it came.
func (m *Market) decideBid(o *JobOffer, id string, ph *phases) ([]byte, error) {
	now := m.now()
	m.mu.Lock()
	if b := m.bids[id]; b != nil {
		m.mu.Unlock()
		return b.raw, nil
	}
	if m.seen.has(id) {
		m.mu.Unlock()
		return nil, refuse(NoBidDeclined, "offer %s already declined", short(id))
	}
	if r := m.admit(o, now); r != nil {
		// Not remembered: a refused offer changed nothing here.
		m.mu.Unlock()
		return nil, r
	}
	m.seen.add(id, now)
	m.mu.Unlock()
	ph.mark("admit")

	if o.Chain != "" && m.cfg.Chain != "" && o.Chain != m.cfg.Chain {
		return nil, refuse(NoBidChain, "the offer pays on chain %s, this provider is paid on chain %s: both nodes must use one chain (init --devchain FILE, or the same --chain-rpc)", o.Chain, m.cfg.Chain)
	}
	if len(m.cfg.AcceptedImages) > 0 && !imageAccepted(m.cfg.AcceptedImages, o.Image) {
		return nil, refuse(NoBidImage, "image %q not accepted here (accepted: %s)", o.Image, strings.Join(m.cfg.AcceptedImages, ", "))
	}
	if o.HoldbackBps > m.cfg.MaxHoldbackBps {
		return nil, refuse(NoBidHoldback, "the offer holds back %s of the pay until its result verifies; this provider accepts at most %s (market.max_holdback)", FormatBps(o.HoldbackBps), FormatBps(m.cfg.MaxHoldbackBps))
	}
	if time.Duration(o.MaxDurationS)*time.Second > m.cfg.MaxDuration {
		return nil, refuse(NoBidDuration, "jobs here run at most %s, the offer asks up to %s", m.cfg.MaxDuration, time.Duration(o.MaxDurationS)*time.Second)
	}
	inv := m.inv.Inventory()
	h := inv.Host
	switch {
	case o.Req.CPUCores > h.CPUCores:
		return nil, refuse(NoBidCPU, "need %d CPU cores, %d here", o.Req.CPUCores, h.CPUCores)
	case o.Req.MemoryMiB > h.MemoryMiB:
		return nil, refuse(NoBidMemory, "need %d MiB of memory, %d MiB here", o.Req.MemoryMiB, h.MemoryMiB)
	case o.Req.DiskMiB == 0 && m.cfg.RequireDiskMiB:
		return nil, refuse(NoBidDisk, "this provider requires a disk bound: set resources.disk_mib in the job spec")
	case o.Req.DiskMiB > h.DiskFreeMiB:
		return nil, refuse(NoBidDisk, "need %d MiB of disk, %d MiB free here", o.Req.DiskMiB, h.DiskFreeMiB)
	case o.Req.DiskMiB == 0 && m.cfg.DefaultDiskMiB > h.DiskFreeMiB:
		return nil, refuse(NoBidDisk, "a job without resources.disk_mib gets %d MiB of disk here, %d MiB free", m.cfg.DefaultDiskMiB, h.DiskFreeMiB)
	}
	use := m.inUse()
	ph.mark("inventory")
	if o.Req.GPUs > 0 && !use.known {
		return nil, refuse(NoBidGPUs, "this provider is starting: the GPUs its running jobs hold are not known yet; ask again shortly")
	}
	m.mu.Lock()
	class, gpus, price, err := m.quote(inv, o, use)
	m.mu.Unlock()
	if err != nil {
		return nil, err
	}
	ph.mark("quote")
	// Who pays, checked outside the lock (the chain may be slow), then
	// the limits and the GPUs again: they may have moved meanwhile.
	wallet, err := m.checkPayer(o, price, len(gpus), ph)
	if err != nil {
		return nil, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if r := m.admit(o, now); r != nil {
		return nil, r
	}
	if o.Req.GPUs > 0 {
		req := o.Req
		req.GPUClass = class
		if _, gpus = m.pickGPUs(inv, req, use); gpus == nil {
			return nil, refuse(NoBidGPUs, "need %d free healthy %s GPUs, %s", o.Req.GPUs, class, m.freeGPUs(inv, req, use))
		}
	}
	until := now.Add(m.cfg.ReserveFor)
	b := Bid{
		Version: ProtocolVersion, OfferID: id, Provider: m.self.String(), Wallet: m.signer.Wallet(),
		Token: o.Token, Price: price.String(), GPUs: gpus, GPUClass: class, ReservedUntilMs: until.UnixMilli(),
		HoldbackBps: o.HoldbackBps,
	}
	raw, _, err := seal("bid", &b, m.key)
	if err != nil {
		return nil, err
	}
	for _, u := range gpus {
		m.preemptLocked(u)
		m.held[u] = &hold{offerID: id, until: until}
	}
	m.bids[id] = &providerBid{offer: *o, bid: b, raw: raw, wallet: wallet}
	ph.mark("seal")
	m.log.Debug("bid", "offer_id", id[:12], "requester", o.Requester, "gpus", len(gpus), "price", price)
	return raw, nil
}

// quote picks the GPUs and the price for an offer, without reserving
// anything; a refusal is a *refusal. The caller holds m.mu.
func (m *Market) quote(inv gpu.Inventory, o *JobOffer, use gpuUse) (string, []string, *big.Int, error) {
	class, gpus := m.pickGPUs(inv, o.Req, use)
	if o.Req.GPUs > 0 && gpus == nil {
		return "", nil, nil, refuse(NoBidGPUs, "need %d free healthy %s GPUs, %s", o.Req.GPUs, orAny(o.Req.GPUClass), m.freeGPUs(inv, o.Req, use))
	}
	if o.Req.GPUs == 0 {
		class = CPU
	}
	price, err := m.price(class, o)
	if err != nil {
		return "", nil, nil, err
	}
	maxPrice, _ := parseAmount("max_price", o.MaxPrice)
	if price.Cmp(maxPrice) > 0 {
		return "", nil, nil, &refusal{code: NoBidPrice, class: class, floor: price.String()}
	}
	return class, gpus, price, nil
}

// admit applies the limits on reservations: at most MaxReservations
// unawarded ones at a time for the requester's peer ID and as many for
// its wallet, none for a peer ID or wallet whose reservations lapsed
// unawarded MaxLapses times within LapseWindow (an honest requester awards
// or releases every bid), and at most ReserveBudget for all requesters
// together. The wallet an offer names is read here before its signature
// is checked: claiming another's wallet can only get the claimant
// refused; reservations count against a wallet only once it signed. The
// caller holds m.mu.
func (m *Market) admit(o *JobOffer, now time.Time) *refusal {
	requester, wallet := o.Requester, walletKey(o.Wallet)
	for _, k := range []string{requester, wallet} {
		m.pruneLapses(k, now)
		if n := len(m.lapses[k]); n >= m.cfg.MaxLapses {
			if k == wallet {
				return refuse(NoBidLimit, "%d reservations of wallet %s lapsed unawarded here in the last %s; try again later", n, o.Wallet, m.cfg.LapseWindow)
			}
			return refuse(NoBidLimit, "%d reservations of yours lapsed unawarded here in the last %s; try again later", n, m.cfg.LapseWindow)
		}
	}
	open, openWallet, all := 0, 0, 0
	for id, pb := range m.bids {
		if m.awarded(id) || !now.Before(time.UnixMilli(pb.bid.ReservedUntilMs)) {
			continue
		}
		all++
		if pb.offer.Requester == requester {
			open++
		}
		if pb.wallet != "" && pb.wallet == wallet {
			openWallet++
		}
	}
	// A deal awarded and not started holds its GPUs for the start window
	// as a reservation does, and counts as one (its wallet signed it).
	for id, d := range m.deals {
		if _, waiting := m.unstarted[id]; waiting {
			if d.Requester == requester {
				open++
			}
			if walletKey(d.RequesterWallet) == wallet {
				openWallet++
			}
		}
	}
	switch {
	case open >= m.cfg.MaxReservations:
		return refuse(NoBidLimit, "you hold %d unawarded reservations here, the most allowed; award or release them", open)
	case openWallet >= m.cfg.MaxReservations:
		return refuse(NoBidLimit, "wallet %s holds %d unawarded reservations here, the most allowed; award or release them", o.Wallet, openWallet)
	case all >= m.cfg.ReserveBudget:
		return refuse(NoBidLimit, "this provider holds %d unawarded reservations, the most it keeps at once; ask again shortly", all)
	}
	return nil
}

func (m *Market) pruneLapses(requester string, now time.Time) {
	l := m.lapses[requester]
	i := 0
	for i < len(l) && now.Sub(l[i]) > m.cfg.LapseWindow {
		i++
	}
	if i == len(l) {
		delete(m.lapses, requester)
	} else {
		m.lapses[requester] = l[i:]
	}
}

// freeGPUs says how many GPUs of the request's class are free, for a
// refusal; the caller holds m.mu.
func (m *Market) freeGPUs(inv gpu.Inventory, req Requirements, use gpuUse) string {
	total, healthy, free := 0, 0, 0
	for _, g := range inv.GPUs {
		if req.GPUClass != "" && g.Class != req.GPUClass {
			continue
		}
		total++
		if g.Health != gpu.Healthy {
			continue
		}
		healthy++
		if !m.taken(g.UUID, use) && g.MemoryMiB >= req.GPUMemoryMiB {
			free++
		}
	}
	if total == 0 {
		return "none here"
	}
	return fmt.Sprintf("%d free here (%d total, %d healthy, %d reserved or in use)", free, total, healthy, healthy-free)
}

func orAny(class string) string {
	if class == "" {
		return "(any class)"
	}
	return class
}

// pickGPUs chooses free healthy GPUs for req, lowest indexes first, from
// one class: none reserved, allocated or in use by a job; the caller
// holds m.mu.
func (m *Market) pickGPUs(inv gpu.Inventory, req Requirements, use gpuUse) (string, []string) {
	if req.GPUs == 0 {
		return "", nil
	}
	byClass := map[string][]string{}
	var classes []string
	for _, g := range inv.GPUs {
		if g.Health != gpu.Healthy || m.taken(g.UUID, use) || g.MemoryMiB < req.GPUMemoryMiB {
			continue
		}
		if req.GPUClass != "" && g.Class != req.GPUClass {
			continue
		}
		if byClass[g.Class] == nil {
			classes = append(classes, g.Class)
		}
		byClass[g.Class] = append(byClass[g.Class], g.UUID)
	}
	sort.Strings(classes)
	for _, c := range classes {
		if len(byClass[c]) >= req.GPUs {
			// GPUs lent to a challenge last: a bid preempts one only
			// when it needs it.
			sort.SliceStable(byClass[c], func(i, j int) bool {
				return m.lent[byClass[c][i]] == nil && m.lent[byClass[c][j]] != nil
			})
			return c, byClass[c][:req.GPUs]
		}
	}
	return "", nil
}

// price is the floor for class in the offer's token: the pricing command's
// answer, or the configured flat price.
func (m *Market) price(class string, o *JobOffer) (*big.Int, error) {
	if len(m.cfg.PricingCommand) > 0 {
		return m.priceByCommand(o)
	}
	byToken := m.cfg.Prices[class]
	if byToken == nil {
		byToken = m.cfg.Prices["*"]
	}
	p, ok := byToken[o.Token]
	if !ok {
		var toks []string
		for t := range byToken {
			toks = append(toks, t)
		}
		sort.Strings(toks)
		return nil, refuse(NoBidToken, "token %s not accepted for %s (accepted: %s)", o.Token, class, strings.Join(toks, ", "))
	}
	return parseAmount("price", p)
}

func (m *Market) priceByCommand(o *JobOffer) (*big.Int, error) {
	in, _ := json.Marshal(o)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, m.cfg.PricingCommand[0], m.cfg.PricingCommand[1:]...)
	cmd.Stdin = bytes.NewReader(in)
	var out bytes.Buffer
	cmd.Stdout = &out
	if err := cmd.Run(); err != nil {
		return nil, refuse(NoBidDeclined, "the pricing command declined the offer")
	}
	p, err := parseAmount("pricing command output", strings.TrimSpace(out.String()))
	if err != nil {
		m.log.Warn("pricing command printed no price", "output", strings.TrimSpace(out.String()))
		return nil, refuse(NoBidDeclined, "the pricing command printed no price")
	}
	return p, nil
}

func imageAccepted(patterns []string, image string) bool {
	for _, p := range patterns {
		if ok, _ := path.Match(p, image); ok {
			return true
		}
	}
	return false
}

// handleAward countersigns a deal for one of our bids: the requester's
// signature, the terms and the reservation must all match.
func (m *Market) handleAward(ctx context.Context, from peer.ID, req []byte) ([]byte, error) {
	ph := m.phases()
	var d Deal
	if len(req) > MaxDealBytes {
		return nil, bad("deal over %d bytes", MaxDealBytes)
	}
	if err := codec.Unmarshal(req, &d); err != nil {
		return nil, bad("deal: %v", err)
	}
	if d.Requester != from.String() || d.Provider != m.self.String() {
		return nil, bad("deal between %s and %s sent by %s", d.Requester, d.Provider, from)
	}
	m.mu.Lock()
	pb := m.bids[d.OfferID]
	m.mu.Unlock()
	if pb == nil {
		return nil, bad("no bid of ours for offer %s (expired?)", short(d.OfferID))
	}
	want := termsFor(&pb.offer, &pb.bid)
	if err := want.computeID(); err != nil {
		return nil, err
	}
	if !sameTerms(want, d.DealTerms) {
		return nil, bad("deal terms differ from our bid")
	}
	m.mu.Lock()
	old := m.deals[d.ID]
	m.mu.Unlock()
	if old != nil {
		// A retried award gets the same answer and changes nothing: above
		// all, a started deal's GPUs stay held (re-arming the unstarted
		// sweep would free them under the running job).
		return canonical(*old)
	}
	if m.now().After(time.UnixMilli(pb.bid.ReservedUntilMs)) {
		return nil, bad("our reservation for offer %s lapsed", short(d.OfferID))
	}
	ph.mark("check")
	if err := m.signer.VerifyDeal(d.DealTerms, d.RequesterSig, pb.offer.Wallet); err != nil {
		return nil, bad("requester signature: %v", err)
	}
	ph.mark("verify")
	sig, err := m.signer.SignDeal(d.DealTerms)
	if err != nil {
		return nil, err
	}
	ph.mark("sign")
	d.ProviderSig = sig
	m.mu.Lock()
	until := m.now().Add(time.Duration(d.MaxDurationS) * time.Second)
	for _, u := range d.GPUs {
		m.preemptLocked(u)
		m.held[u] = &hold{offerID: d.OfferID, dealID: d.ID, until: until}
	}
	m.deals[d.ID] = &d
	m.unstarted[d.ID] = m.now().Add(m.cfg.StartWindow)
	m.mu.Unlock()
	m.requestRepublish()
	ph.mark("hold")
	ph.done("award confirmed", "deal_id", short(d.ID))
	m.log.Info("deal", "deal_id", short(d.ID), "requester", d.Requester, "gpus", len(d.GPUs), "price", d.Price)
	return canonical(d)
}

// handleRelease frees the GPUs reserved for a bid that lost: only the
// offer's requester may ask, and an awarded bid stays.
func (m *Market) handleRelease(ctx context.Context, from peer.ID, req []byte) ([]byte, error) {
	id := string(req)
	m.mu.Lock()
	pb := m.bids[id]
	if pb == nil || pb.offer.Requester != from.String() || m.awarded(id) {
		m.mu.Unlock()
		return nil, bad("no releasable bid for offer %s", short(id))
	}
	for u, h := range m.held {
		if h.offerID == id && h.dealID == "" {
			delete(m.held, u)
		}
	}
	delete(m.bids, id)
	m.mu.Unlock()
	return []byte("ok"), nil
}

// DealOffer is the offer a deal of this node's answered: what the
// requester asked for (resources, duration), which the deal's job must
// keep to. False once the deal is released.
func (m *Market) DealOffer(dealID string) (JobOffer, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	d := m.deals[dealID]
	if d == nil {
		return JobOffer{}, false
	}
	pb := m.bids[d.OfferID]
	if pb == nil {
		return JobOffer{}, false
	}
	return pb.offer, true
}

// DiskBound is the disk_mib a deal's job runs with here: what its offer
// asked, or Config.DefaultDiskMiB when it asked none (zero: no bound).
// False once the deal is released.
func (m *Market) DiskBound(dealID string) (uint64, bool) {
	o, ok := m.DealOffer(dealID)
	if !ok {
		return 0, false
	}
	if o.Req.DiskMiB == 0 {
		return m.cfg.DefaultDiskMiB, true
	}
	return o.Req.DiskMiB, true
}

// Deals are the deals this node provides for.
func (m *Market) Deals() []Deal {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]Deal, 0, len(m.deals))
	for _, d := range m.deals {
		out = append(out, *d)
	}
	return out
}

// BidFor says whether this provider holds a bid, not yet awarded, on
// offer offerID of requester: a requester may ask such a bidder things
// before it awards (how it reaches the other bidders).
func (m *Market) BidFor(offerID, requester string) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	b := m.bids[offerID]
	return b != nil && b.offer.Requester == requester
}

func termsFor(o *JobOffer, b *Bid) DealTerms {
	return DealTerms{
		Version: ProtocolVersion, OfferID: b.OfferID, Requester: o.Requester, Provider: b.Provider,
		RequesterWallet: o.Wallet, ProviderWallet: b.Wallet, Token: b.Token, Price: b.Price,
		MaxDurationS: o.MaxDurationS, GPUs: b.GPUs, GPUClass: b.GPUClass, SpecHash: o.SpecHash,
		HoldbackBps: b.HoldbackBps,
	}
}

func sameTerms(a, b DealTerms) bool {
	x, err1 := canonical(a)
	y, err2 := canonical(b)
	return err1 == nil && err2 == nil && bytes.Equal(x, y)
}

func short(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
}
