package gpu

import (
	"fmt"
	"math"
	"regexp"
	"strings"
)

var (
	memTokenRE = regexp.MustCompile(`^(\d+)gb$`)
	// Words in NVML names that say nothing about what a job gets.
	noiseWords = map[string]bool{
		"mock": true, "nvidia": true, "geforce": true, "tesla": true,
		"sxm": true, "sxm2": true, "sxm4": true, "sxm5": true, "sxm6": true, "pcie": true, "nvl": true,
		"hbm2": true, "hbm2e": true, "hbm3": true, "hbm3e": true,
	}
)

// Sizes that cards are sold by, in GB. The driver reports usable memory,
// a little under the label (a real H200 reports 143771 MiB, 140.4 GiB, for
// its "141GB"), so a name without a size is matched to the nearest label.
var marketedSizes = []float64{8, 10, 12, 16, 20, 24, 32, 40, 48, 64, 80, 94, 96, 141, 180, 192, 288}

// marketedGB is the label nearest to the memory reported, within 7%; a
// size far from every label is rounded as it is.
func marketedGB(memoryMiB uint64) uint64 {
	gib := float64(memoryMiB) / 1024
	best, bestOff := 0.0, 0.07
	for _, s := range marketedSizes {
		if off := math.Abs(gib-s) / s; off <= bestOff {
			best, bestOff = s, off
		}
	}
	if best == 0 {
		return (memoryMiB + 512) / 1024
	}
	return uint64(best)
}

// ClassKey normalizes a GPU to the key that requesters match on, e.g.
// "NVIDIA H100 80GB HBM3" with 80 GiB becomes "nvidia-h100-80gb". The
// memory size comes from the name when it has one (vendors round: an H200
// is "141GB" though it has 140.6 GiB), else from the memory reported.
func ClassKey(name string, memoryMiB uint64) string {
	var model []string
	memGB := ""
	for _, w := range strings.FieldsFunc(strings.ToLower(name), func(r rune) bool {
		return r == ' ' || r == '-' || r == '_'
	}) {
		if m := memTokenRE.FindStringSubmatch(w); m != nil {
			memGB = m[1]
			continue
		}
		if !noiseWords[w] {
			model = append(model, w)
		}
	}
	if memGB == "" {
		memGB = fmt.Sprint(marketedGB(memoryMiB))
	}
	if len(model) == 0 {
		model = []string{"unknown"}
	}
	return "nvidia-" + strings.Join(model, "-") + "-" + memGB + "gb"
}

// MockPrefix starts the class of a GPU from go-nvml's mock servers. A
// mock says so in its class: it can then pass only a mock class's
// proof-of-GPU envelope, and a requester asking for a real class never
// deals with it by mistake.
const MockPrefix = "mock-"

// MockClassKey is ClassKey for a mock GPU: "mock-h100-80gb" where the
// card it mimics is "nvidia-h100-80gb".
func MockClassKey(name string, memoryMiB uint64) string {
	if hostileMocks {
		return ClassKey(name, memoryMiB)
	}
	return MockPrefix + strings.TrimPrefix(ClassKey(name, memoryMiB), "nvidia-")
}

// IsMockClass says whether class is a mock GPU's.
func IsMockClass(class string) bool { return strings.HasPrefix(class, MockPrefix) }

// hostileMocks, set only in a build with the aixblock_hostile tag (tests
// build one), classes mock GPUs as the real cards they mimic: a provider
// that lies about its GPUs, for the tests that catch it.
var hostileMocks = false
