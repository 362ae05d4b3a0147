package lease

import (
	"fmt"
	"math/big"
	"time"

	"github.com/aixblock/aixblock/chain"
	"github.com/aixblock/aixblock/jobs"
	"github.com/aixblock/aixblock/market"
	"github.com/ethereum/go-ethereum/common"
)

// withinTerms refuses a spec that asks for more than its deal: the deal
// binds the spec's hash, but the provider's bid, the deposit it asked for
// and the GPUs it holds all followed the offer, so a spec must keep to the
// offer's duration and resources. Each refusal names the spec's field.
func (pv *Provider) withinTerms(deal *market.Deal, spec *jobs.Spec) error {
	o, ok := pv.market.DealOffer(deal.ID)
	if !ok {
		return fmt.Errorf("deal %s: no offer of it on record here (released?)", short(deal.ID))
	}
	return specWithinTerms(deal, o.Req, spec)
}

func specWithinTerms(deal *market.Deal, req market.Requirements, spec *jobs.Spec) error {
	r := spec.Resources
	limit := time.Duration(deal.MaxDurationS) * time.Second
	if d := spec.ExecutionTimeout(); d > limit {
		return fmt.Errorf("timeouts.execution: %s is longer than the deal's %s", d, limit)
	}
	if r.GPUs > len(deal.GPUs) {
		return fmt.Errorf("resources.gpus: %d, the deal holds %d", r.GPUs, len(deal.GPUs))
	}
	if r.GPUClass != "" && deal.GPUClass != "" && r.GPUClass != deal.GPUClass {
		return fmt.Errorf("resources.gpu_class: %q, the deal's GPUs are %q", r.GPUClass, deal.GPUClass)
	}
	if r.GPUMemoryMiB > req.GPUMemoryMiB {
		return fmt.Errorf("resources.gpu_memory_mib: %d, the offer asked %d", r.GPUMemoryMiB, req.GPUMemoryMiB)
	}
	// What a spec leaves out runs at the jobs package's defaults, which
	// the offer need not name.
	if r.CPU == 0 {
		r.CPU = jobs.DefaultCPU
	}
	if r.CPUCores() > max(req.CPUCores, jobs.Resources{CPU: jobs.DefaultCPU}.CPUCores()) {
		return fmt.Errorf("resources.cpu: %g, the offer asked %d cores", r.CPU, req.CPUCores)
	}
	mem := r.MemoryMiB
	if mem == 0 {
		mem = jobs.DefaultMemoryMiB
	}
	if mem > max(req.MemoryMiB, jobs.DefaultMemoryMiB) {
		return fmt.Errorf("resources.memory_mib: %d, the offer asked %d", mem, req.MemoryMiB)
	}
	if r.DiskMiB > req.DiskMiB {
		return fmt.Errorf("resources.disk_mib: %d, the offer asked %d", r.DiskMiB, req.DiskMiB)
	}
	return nil
}

// dealCost is what a deal costs for d of run time: price per GPU-hour ×
// GPUs × hours, rounded up to a base unit.
func dealCost(deal market.Deal, d time.Duration) *big.Int {
	price, ok := new(big.Int).SetString(deal.Price, 10)
	if !ok {
		return new(big.Int) // no deal yet (a queued job): nothing to pay
	}
	gpus := int64(max(len(deal.GPUs), 1))
	c := new(big.Int).Mul(price, big.NewInt(gpus))
	c.Mul(c, big.NewInt(d.Milliseconds()))
	ms := big.NewInt(3600 * 1000)
	c.Add(c, new(big.Int).Sub(ms, big.NewInt(1)))
	return c.Div(c, ms)
}

// dealToken is the token a deal pays in. The market checked its name
// before the deal was made; a name that does not parse (a record written
// by hand) gives unparsedToken, which no channel is in, so that such a
// deal is neither funded nor trusted, rather than paid in the native coin.
func dealToken(d market.Deal) common.Address {
	t, err := chain.ParseTokenName(d.Token)
	if err != nil {
		return unparsedToken
	}
	return t
}

var unparsedToken = common.MaxAddress
