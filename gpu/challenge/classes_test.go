package challenge_test

import (
	"slices"
	"testing"

	"github.com/aixblock/aixblock/gpu"
	"github.com/aixblock/aixblock/gpu/challenge"
)

// TestClassKeys: every envelope is named as gpu.ClassKey names the cards
// it covers (the names their drivers report), so an advert's class finds
// its envelope.
func TestClassKeys(t *testing.T) {
	cards := []struct {
		name string
		mib  uint64
	}{
		{"NVIDIA A100-SXM4-40GB", 40960}, {"NVIDIA A100-SXM4-80GB", 81920}, {"NVIDIA A100 80GB PCIe", 81920},
		{"NVIDIA H100 80GB HBM3", 81559}, {"NVIDIA H100 PCIe", 81559}, {"NVIDIA H100 NVL", 95830},
		{"NVIDIA H200", 143771}, {"NVIDIA H200 NVL", 143771}, {"NVIDIA B200", 183359},
		{"NVIDIA GeForce RTX 4090", 24564}, {"NVIDIA GeForce RTX 3090", 24576}, {"NVIDIA RTX A6000", 49140},
		{"NVIDIA L4", 23034}, {"NVIDIA L40S", 46068},
	}
	var keys []string
	for _, c := range cards {
		k := gpu.ClassKey(c.name, c.mib)
		if _, err := challenge.Lookup(k); err != nil {
			t.Errorf("%s is %s: %v", c.name, k, err)
		}
		keys = append(keys, k)
	}
	for _, class := range challenge.Classes() {
		if !slices.Contains(keys, class) {
			t.Errorf("envelope %s matches none of the cards", class)
		}
	}
}
