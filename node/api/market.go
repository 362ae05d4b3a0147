package api

import (
	"time"

	"github.com/aixblock/aixblock/jobs"
	"github.com/aixblock/aixblock/market"
	"github.com/aixblock/aixblock/market/proof"
	"github.com/aixblock/aixblock/market/receipt"
)

// ProvidersInfo is GET /v1/market/providers.
type ProvidersInfo struct {
	Class     string            `json:"class"`
	Providers []ProviderSummary `json:"providers"`
}

// ProviderSummary is one provider as `market providers` shows it.
type ProviderSummary struct {
	PeerID     string                `json:"peer_id"`
	Wallet     string                `json:"wallet"`
	GPUs       []market.GPUGroup     `json:"gpus"`
	Price      []PriceView           `json:"price"`
	Health     string                `json:"health"`
	Reputation market.ProviderRecord `json:"reputation"`
	// Proof is its proof-of-GPU standing as this node weighs the records
	// it holds: "verified by N, last at T", "failed: why", "unverified".
	Proof market.ProofStanding `json:"proof"`
	// Receipts is its view from the receipts of ended deals: what this
	// node and the peers it dealt with saw, what the escrow paid it, and
	// how much evidence stands behind it.
	Receipts  *receipt.Summary `json:"receipts,omitempty"`
	ExpiresAt time.Time        `json:"expires_at"`
}

// PriceView is a price per GPU-hour in base and whole units.
type PriceView struct {
	Token      string `json:"token"`
	Symbol     string `json:"symbol"`
	PerGPUHour string `json:"per_gpu_hour"`
	Units      string `json:"per_gpu_hour_units"`
}

// OfferRequest is POST /v1/market/offer: what a job needs (a spec's
// resources, with their JSON names: gpus, gpu_class, gpu_memory_mib, cpu,
// memory_mib, disk_mib) and the most it pays per GPU-hour, in whole units
// of the token. The daemon normalises the resources as a spec's are
// (jobs.Resources.Normalize) when it decodes the request.
type OfferRequest struct {
	jobs.Resources
	MaxPrice string `json:"max_price"`
	Token    string `json:"token,omitempty"`
	Duration string `json:"duration,omitempty"` // e.g. "1h"; empty means 1 h
	Image    string `json:"image,omitempty"`
	SpecHash string `json:"spec_hash,omitempty"`
	// Verified deals only with providers that stand verified by proof of
	// GPU for the class (a spec's require.verified).
	Verified bool `json:"verified,omitempty"`
	// HoldbackBps of the pay, in basis points, waits for the result's
	// verification; bids agree to it.
	HoldbackBps int `json:"holdback_bps,omitempty"`
}

// OfferResult is the answer to POST /v1/market/offer.
type OfferResult struct {
	Deal  *market.Deal            `json:"deal"`
	Stats market.NegotiationStats `json:"stats"`
}

// VerifyRequest is POST /v1/market/verify: challenge a peer's GPUs of a
// class (proof of GPU). GPUs is how many are challenged together (zero:
// one); N the matrices' side (zero: the class's).
type VerifyRequest struct {
	Peer  string `json:"peer"`
	Class string `json:"class"`
	GPUs  int    `json:"gpus,omitempty"`
	N     int    `json:"n,omitempty"`
}

// VerifyResult is the answer to POST /v1/market/verify: the signed
// record of the verdict, its ID, and on a failed challenge why.
type VerifyResult struct {
	Record proof.Record `json:"record"`
	ID     string       `json:"id"`
	Passed bool         `json:"passed"`
	Error  string       `json:"error,omitempty"`
}
