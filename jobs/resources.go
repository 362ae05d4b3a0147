package jobs

import (
	"math"
	"strings"
)

// Normalize puts r in the one form everything downstream compares: the GPU
// class lowercased (class keys are, as gpu.ClassKey makes them; users type
// NVIDIA-H100-80GB as often as not). Validate calls it, so a parsed spec is
// normal; the API calls it on an offer's resources when it decodes them.
// Nothing after that point lowercases again.
func (r *Resources) Normalize() {
	r.GPUClass = strings.ToLower(strings.TrimSpace(r.GPUClass))
}

// CPUCores is CPU rounded up to whole cores, the unit providers advertise
// and offers ask in (the market has no fractional cores: a job that wants
// 1.5 needs a provider with 2). This is the one place a fraction becomes
// cores; the container still gets its exact quota from CPU.
func (r Resources) CPUCores() int {
	return int(math.Ceil(r.CPU))
}
