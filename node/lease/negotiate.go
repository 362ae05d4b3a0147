package lease

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/aixblock/aixblock/chain"
	"github.com/aixblock/aixblock/jobs"
	"github.com/aixblock/aixblock/market"
	"github.com/aixblock/aixblock/node/api"
)

// Negotiate makes one deal for req through the market (POST
// /v1/market/offer). req's resources are normal already (the API
// normalises them as it decodes the request).
func (rq *Requester) Negotiate(ctx context.Context, req api.OfferRequest) (api.OfferResult, error) {
	ds, st, err := rq.negotiate(ctx, req, avoid{}, 1, nil)
	if err != nil {
		return api.OfferResult{Stats: st}, err
	}
	return api.OfferResult{Deal: ds[0], Stats: st}, nil
}

// negotiate makes count deals for req with different providers (a gang's
// ranks) from one offer, none with the providers in exclude.
func (rq *Requester) negotiate(ctx context.Context, req api.OfferRequest, exclude avoid, count int, place market.Placer) ([]*market.Deal, market.NegotiationStats, error) {
	var st market.NegotiationStats
	tok, err := chain.ParseToken(req.Token, rq.chain.DefaultToken())
	if err != nil {
		return nil, st, invalid{err} // the error names the token
	}
	_, dec, err := rq.chain.TokenInfo(ctx, tok)
	if err != nil {
		return nil, st, err
	}
	maxPrice, err := chain.ParseUnits(req.MaxPrice, dec)
	if err != nil {
		return nil, st, invalid{fmt.Errorf("max_price: %w", err)}
	}
	dur := time.Hour
	if req.Duration != "" {
		if dur, err = time.ParseDuration(req.Duration); err != nil || dur <= 0 {
			return nil, st, invalid{fmt.Errorf("duration %q: want a positive duration like 30m or 2h", req.Duration)}
		}
	}
	spec := req.SpecHash
	if spec == "" {
		spec = strings.Repeat("0", 64)
	}
	ds, st, err := rq.market.NegotiateMany(ctx, market.OfferRequest{
		Req:   requirements(req.Resources),
		Image: req.Image, Token: chain.TokenName(tok), MaxPrice: maxPrice.String(), MaxDuration: dur, SpecHash: spec,
		Exclude: exclude.peers, Apart: exclude.apart, RequireVerified: req.Verified, HoldbackBps: req.HoldbackBps, Place: place,
	}, count)
	if err != nil {
		if strings.Contains(err.Error(), "invalid market message") {
			return nil, st, invalid{err}
		}
		return nil, st, err
	}
	// make bench-scale-real reads offer → deal from this line.
	rq.log.Info("deal signed", "offer_id", short(st.OfferID), "deals", len(ds), "providers_contacted", st.Contacted,
		"bids", st.Bids, "negotiation", st.Elapsed.Round(time.Millisecond))
	return ds, st, nil
}

// requirements is what an offer asks of a provider, from a job's
// resources: the one conversion from jobs' model to the market's wire
// form, which counts whole CPU cores (jobs.Resources.CPUCores rounds up).
func requirements(r jobs.Resources) market.Requirements {
	return market.Requirements{GPUClass: r.GPUClass, GPUs: r.GPUs, GPUMemoryMiB: r.GPUMemoryMiB,
		CPUCores: r.CPUCores(), MemoryMiB: r.MemoryMiB, DiskMiB: r.DiskMiB}
}
