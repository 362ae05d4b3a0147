package api

import (
	"context"
	"net/http"
	"net/url"

	"github.com/aixblock/aixblock/market/receipt"
)

// ReceiptsResult is GET /v1/market/receipts?peer=PEER: this node's view
// of the provider PEER from the receipts it holds (its own, those PEER
// served, and those of peers it dealt with), and the receipts, newest
// first.
type ReceiptsResult struct {
	Peer     string           `json:"peer"`
	Summary  receipt.Summary  `json:"summary"`
	Receipts []receipt.Signed `json:"receipts"`
	// FetchError says why PEER's own receipts were not fetched, or why
	// some it served were refused.
	FetchError string `json:"fetch_error,omitempty"`
}

// Receipts is GET /v1/market/receipts.
func (c *Client) Receipts(ctx context.Context, peer string) (ReceiptsResult, error) {
	var out ReceiptsResult
	return out, c.do(ctx, http.MethodGet, "/v1/market/receipts?peer="+url.QueryEscape(peer), nil, &out)
}
