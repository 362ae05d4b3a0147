package gpu

import (
	"fmt"
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
		memGB = fmt.Sprint((memoryMiB + 512) / 1024)
	}
	if len(model) == 0 {
		model = []string{"unknown"}
	}
	return "nvidia-" + strings.Join(model, "-") + "-" + memGB + "gb"
}
