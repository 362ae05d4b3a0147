package node

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"path/filepath"
	"time"

	"github.com/aixblock/aixblock/market/receipt"
	"github.com/aixblock/aixblock/node/api"
	"github.com/libp2p/go-libp2p/core/peer"
)

// ReceiptsFile is where the daemon keeps the receipts of ended deals, in
// the repo: those it signed as provider or requester, and those it
// fetched about providers.
const ReceiptsFile = "receipts.json"

// openReceipts opens the receipt store, which the lease fills as deals
// end, and serves the receipts this node signed.
func (n *Node) openReceipts(log *slog.Logger) error {
	store, err := receipt.OpenStore(receipt.StoreConfig{Path: filepath.Join(n.repo.Dir, ReceiptsFile),
		Network: n.p2p.Network(), Self: n.p2p.Host.ID(), Log: log})
	if err != nil {
		return fmt.Errorf("receipts: %w", err)
	}
	n.receipts = store
	if n.receiptServer, err = receipt.NewServer(n.p2p.Host, n.p2p.Network(), receipt.ServerConfig{Store: store, Log: log}); err != nil {
		return fmt.Errorf("receipts: %w", err)
	}
	return nil
}

// closeReceipts stops serving receipts.
func (n *Node) closeReceipts() error {
	if n.receiptServer == nil {
		return nil
	}
	return n.receiptServer.Close()
}

// receiptRoutes serves GET /v1/market/receipts?peer=PEER.
func (n *Node) receiptRoutes(mux *http.ServeMux) {
	mux.HandleFunc("GET /v1/market/receipts", func(w http.ResponseWriter, r *http.Request) {
		res, err := n.providerReceipts(r.Context(), r.URL.Query().Get("peer"))
		reply(w, res, err)
	})
}

// providerReceipts fetches what the provider serves about itself (unless
// it is this node), keeps what passes, and sums up the receipts held
// about it as this node trusts them.
func (n *Node) providerReceipts(ctx context.Context, p string) (api.ReceiptsResult, error) {
	pid, err := peer.Decode(p)
	if err != nil {
		return api.ReceiptsResult{}, badRequest{fmt.Errorf("peer %q: %w", p, err)}
	}
	res := api.ReceiptsResult{Peer: pid.String()}
	if pid != n.p2p.Host.ID() {
		res.FetchError = n.fetchReceipts(ctx, pid)
	}
	self := n.p2p.Host.ID()
	res.Summary = n.receipts.View(ctx, pid, receipt.ViewConfig{Self: self, Dealt: n.receipts.DealtWith()}, time.Now())
	res.Receipts = n.receipts.Receipts(pid)
	return res, nil
}

// fetchReceipts asks pid for its receipts and keeps those that pass;
// the answer is why some did not, or the request failed.
func (n *Node) fetchReceipts(ctx context.Context, pid peer.ID) string {
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	got, ferr := receipt.FetchReceipts(ctx, n.p2p.Host, n.p2p.Network(), pid)
	raws := make([][]byte, len(got))
	for i, r := range got {
		raws[i] = r.Raw
	}
	_, aerr := n.receipts.AddAll(raws, time.Now())
	switch {
	case ferr != nil:
		return ferr.Error()
	case aerr != nil:
		return aerr.Error()
	}
	return ""
}
