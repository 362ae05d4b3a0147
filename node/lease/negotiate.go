package lease

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/aixblock/aixblock/chain"
	"github.com/aixblock/aixblock/market"
)

// OfferRequest is POST /v1/market/offer: what a job needs and the most it
// pays per GPU-hour, in whole units of the token.
type OfferRequest struct {
	GPUs         int    `json:"gpus"`
	GPUClass     string `json:"gpu_class,omitempty"`
	GPUMemoryMiB uint64 `json:"gpu_memory_mib,omitempty"`
	CPU          int    `json:"cpu,omitempty"`
	MemoryMiB    uint64 `json:"memory_mib,omitempty"`
	DiskMiB      uint64 `json:"disk_mib,omitempty"`
	MaxPrice     string `json:"max_price"`
	Token        string `json:"token,omitempty"`
	Duration     string `json:"duration,omitempty"` // e.g. "1h"; empty means 1 h
	Image        string `json:"image,omitempty"`
	SpecHash     string `json:"spec_hash,omitempty"`
	exclude      []string
	count        int // deals wanted with different providers (a gang's ranks)
}

// OfferResult is the answer to POST /v1/market/offer.
type OfferResult struct {
	Deal  *market.Deal            `json:"deal"`
	Stats market.NegotiationStats `json:"stats"`
	all   []*market.Deal          // every deal, when more than one was asked for
}

// Negotiate makes deals for req through the market: one, or req.count
// with different providers (a gang's ranks), from one offer.
func (m *Manager) Negotiate(ctx context.Context, req OfferRequest) (OfferResult, error) {
	tok, err := chain.ParseToken(req.Token, m.chain.DefaultToken())
	if err != nil {
		return OfferResult{}, invalid{fmt.Errorf("token: %w", err)}
	}
	_, dec, err := m.chain.TokenInfo(ctx, tok)
	if err != nil {
		return OfferResult{}, err
	}
	maxPrice, err := chain.ParseUnits(req.MaxPrice, dec)
	if err != nil {
		return OfferResult{}, invalid{fmt.Errorf("max_price: %w", err)}
	}
	dur := time.Hour
	if req.Duration != "" {
		if dur, err = time.ParseDuration(req.Duration); err != nil || dur <= 0 {
			return OfferResult{}, invalid{fmt.Errorf("duration %q: want a positive duration like 30m or 2h", req.Duration)}
		}
	}
	spec := req.SpecHash
	if spec == "" {
		spec = strings.Repeat("0", 64)
	}
	ds, st, err := m.market.NegotiateMany(ctx, market.OfferRequest{
		Req: market.Requirements{GPUClass: strings.ToLower(req.GPUClass), GPUs: req.GPUs, GPUMemoryMiB: req.GPUMemoryMiB,
			CPUCores: req.CPU, MemoryMiB: req.MemoryMiB, DiskMiB: req.DiskMiB},
		Image: req.Image, Token: chain.TokenName(tok), MaxPrice: maxPrice.String(), MaxDuration: dur, SpecHash: spec,
		Exclude: req.exclude,
	}, req.count)
	if err != nil {
		if strings.Contains(err.Error(), "invalid market message") {
			return OfferResult{Stats: st}, invalid{err}
		}
		return OfferResult{Stats: st}, err
	}
	return OfferResult{Deal: ds[0], Stats: st, all: ds}, nil
}
