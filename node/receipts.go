package node

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/aixblock/aixblock/chain"
	"github.com/aixblock/aixblock/market/receipt"
	"github.com/aixblock/aixblock/node/api"
	"github.com/libp2p/go-libp2p/core/peer"
)

// ReceiptsFile is where the daemon keeps the receipts of ended deals, in
// the repo: those it signed as provider or requester, and those it
// fetched about providers.
const ReceiptsFile = "receipts.json"

// openReceipts opens the receipt store, which the lease fills as deals
// end, serves the receipts this node signed, gathers those others
// signed about the providers it looks at, and reads what the escrow
// paid them. It comes after the market, whose reputation says which
// providers this node dealt with.
func (n *Node) openReceipts(log *slog.Logger) error {
	store, err := receipt.OpenStore(receipt.StoreConfig{Path: filepath.Join(n.repo.Dir, ReceiptsFile),
		Network: n.p2p.Network(), Self: n.p2p.Host.ID(), Trusted: n.dealtAsRequester, Log: log})
	if err != nil {
		return fmt.Errorf("receipts: %w", err)
	}
	n.receipts = store
	if n.receiptServer, err = receipt.NewServer(n.p2p.Host, n.p2p.Network(), receipt.ServerConfig{Store: store, Log: log}); err != nil {
		return fmt.Errorf("receipts: %w", err)
	}
	if n.gatherer, err = receipt.NewGatherer(receipt.GatherConfig{Host: n.p2p.Host, Store: store, Peers: n.receiptPeers, Log: log}); err != nil {
		return fmt.Errorf("receipts: %w", err)
	}
	if n.chain != nil {
		n.paid = chain.NewPaid(n.chain, chain.PaidConfig{})
	}
	return nil
}

// closeReceipts stops gathering and serving receipts.
func (n *Node) closeReceipts() error {
	if n.gatherer != nil {
		n.gatherer.Close()
	}
	if n.receiptServer == nil {
		return nil
	}
	return n.receiptServer.Close()
}

// dealtAsRequester reports whether this node dealt with p as requester
// (its reputation holds a record of p as provider).
func (n *Node) dealtAsRequester(p peer.ID) bool {
	if n.market == nil {
		return false
	}
	r := n.market.Reputation().Get(p.String())
	return r.Completed+r.Failed+r.NoShow > 0
}

// receiptDealt is, as of now, whether this node dealt with p: a receipt
// it signed names p, or its reputation holds p. Their receipts count in
// its view.
func (n *Node) receiptDealt() func(peer.ID) bool {
	dealt := n.receipts.DealtWith()
	return func(p peer.ID) bool { return dealt(p) || n.dealtAsRequester(p) }
}

// receiptPeers are whom to ask for receipts about a provider: the peers
// of the receipts this node signed, the latest first, then the
// providers of its reputation record, the most deals first.
func (n *Node) receiptPeers() []peer.ID {
	out := n.receipts.Dealt()
	if n.market == nil {
		return out
	}
	rep := n.market.Reputation().All()
	deals := func(p string) int { return rep[p].Completed + rep[p].Failed + rep[p].NoShow }
	for _, p := range slices.SortedFunc(maps.Keys(rep), func(a, b string) int {
		return cmp.Or(cmp.Compare(deals(b), deals(a)), cmp.Compare(a, b))
	}) {
		if id, err := peer.Decode(p); err == nil && deals(p) > 0 && !slices.Contains(out, id) {
			out = append(out, id)
		}
	}
	return out
}

// receiptView is this node's view of provider from the receipts held;
// with wallet set, and a chain, what the escrow paid it too.
func (n *Node) receiptView(ctx context.Context, provider peer.ID, wallet string) receipt.Summary {
	cfg := receipt.ViewConfig{Self: n.p2p.Host.ID(), Dealt: n.receiptDealt()}
	if n.paid != nil && wallet != "" {
		cfg.Chain, cfg.Wallet = n.paid, wallet
	}
	return n.receipts.View(ctx, provider, cfg, time.Now())
}

// receiptRoutes serves GET /v1/market/receipts?peer=PEER.
func (n *Node) receiptRoutes(mux *http.ServeMux) {
	mux.HandleFunc("GET /v1/market/receipts", func(w http.ResponseWriter, r *http.Request) {
		res, err := n.providerReceipts(r.Context(), r.URL.Query().Get("peer"))
		reply(w, res, err)
	})
}

// providerReceipts gathers what the provider and the peers this node
// dealt with serve about it (unless it is this node), keeps what
// passes, and sums up the receipts held about it as this node trusts
// them, with what the escrow paid the wallet the provider signed with.
func (n *Node) providerReceipts(ctx context.Context, p string) (api.ReceiptsResult, error) {
	pid, err := peer.Decode(p)
	if err != nil {
		return api.ReceiptsResult{}, badRequest{fmt.Errorf("peer %q: %w", p, err)}
	}
	res := api.ReceiptsResult{Peer: pid.String()}
	if err := n.gatherer.Gather(ctx, pid); err != nil {
		res.FetchError = err.Error()
	}
	res.Receipts = n.receipts.Receipts(pid)
	res.Summary = n.receiptView(ctx, pid, providerWallet(pid, res.Receipts))
	return res, nil
}

// providerWallet is the wallet of the newest receipt the provider
// signed itself; empty if none.
func providerWallet(provider peer.ID, rs []receipt.Signed) string {
	for _, r := range rs {
		if r.SignedBy(provider) {
			return r.ProviderWallet
		}
	}
	return ""
}

// Time bounds of the receipts `market providers` shows: gathering
// within the first, the whole view within the second (on-chain reads
// that take longer say so and go on from there next time).
const (
	listGather = 5 * time.Second
	listView   = 10 * time.Second
)

// receiptSummaries fills each provider's view from receipts: gathered
// first, a few at a time, within listGather.
func (n *Node) receiptSummaries(ctx context.Context, ps []api.ProviderSummary) {
	gctx, cancel := context.WithTimeout(ctx, listGather)
	defer cancel()
	var wg sync.WaitGroup
	sem := make(chan struct{}, 4)
	for _, s := range ps {
		pid, err := peer.Decode(s.PeerID)
		if err != nil {
			continue
		}
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			if err := n.gatherer.Gather(gctx, pid); err != nil {
				n.log.Debug("receipts gathered in part", "peer_id", pid, "err", err)
			}
		})
	}
	wg.Wait()
	vctx, cancel := context.WithTimeout(ctx, listView)
	defer cancel()
	for i := range ps {
		if pid, err := peer.Decode(ps[i].PeerID); err == nil {
			v := n.receiptView(vctx, pid, ps[i].Wallet)
			ps[i].Receipts = &v
		}
	}
}

// receiptHook is the market's view of receipts (market.ReceiptHook).
type receiptHook struct{ n *Node }

// Seen gathers the provider's receipts in the background.
func (h receiptHook) Seen(provider string) {
	if pid, err := peer.Decode(provider); err == nil && h.n.gatherer != nil {
		h.n.gatherer.Soon(pid)
	}
}

// Score is the provider's score from the receipts held: no chain read
// in a ranking.
func (h receiptHook) Score(provider string) float64 {
	pid, err := peer.Decode(provider)
	if err != nil || h.n.receipts == nil {
		return 0
	}
	return h.n.receiptView(context.Background(), pid, "").Score
}
