package market

import "github.com/libp2p/go-libp2p/core/peer"

// ReceiptHook ties the market to the receipts of ended deals
// (market/receipt, wired by the daemon) without the market knowing how
// receipts are signed, kept or fetched. Nil turns it off: every
// provider scores zero.
type ReceiptHook interface {
	// Seen is told of a provider this node looks at (found, or about
	// to be asked for a bid): its receipts may be gathered, in the
	// background.
	Seen(provider string)
	// Score is the provider's standing from receipts as this node
	// weighs them (its own, and those of peers it dealt with):
	// positive for deals that went well, negative for failed and
	// outvoted ones, zero with no evidence that counts. It reads what
	// is held; it never waits on the network.
	Score(provider string) float64
}

// receiptScore asks the hook, if any.
func (m *Market) receiptScore(provider string) float64 {
	if m.cfg.Receipts == nil {
		return 0
	}
	return m.cfg.Receipts.Score(provider)
}

// receiptsSeen tells the hook, if any, of providers looked at.
func (m *Market) receiptsSeen(providers ...peer.ID) {
	if m.cfg.Receipts == nil {
		return
	}
	for _, p := range providers {
		m.cfg.Receipts.Seen(p.String())
	}
}
