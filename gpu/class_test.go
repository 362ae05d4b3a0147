package gpu

import "testing"

func TestClassKey(t *testing.T) {
	for _, tc := range []struct {
		name string
		mib  uint64
		want string
	}{
		{"NVIDIA H100 80GB HBM3", 81559, "nvidia-h100-80gb"},
		{"Mock NVIDIA A100-SXM4-40GB", 40960, "nvidia-a100-40gb"},
		{"NVIDIA A100-PCIE-80GB", 81920, "nvidia-a100-80gb"},
		{"NVIDIA H200 141GB HBM3e", 144384, "nvidia-h200-141gb"},
		{"NVIDIA B200 180GB HBM3e", 184320, "nvidia-b200-180gb"},
		{"NVIDIA GeForce RTX 4090", 24564, "nvidia-rtx-4090-24gb"},
		{"Tesla T4", 15360, "nvidia-t4-16gb"},
		// Names without a size, as real drivers report them (the H200's was
		// read on a real card with driver 580).
		{"NVIDIA H200", 143771, "nvidia-h200-141gb"},
		{"NVIDIA H100 NVL", 95830, "nvidia-h100-94gb"},
		{"NVIDIA B200", 183359, "nvidia-b200-180gb"},
		{"NVIDIA L4", 23034, "nvidia-l4-24gb"},
		{"Odd card", 57344, "nvidia-odd-card-56gb"},
		{"", 0, "nvidia-unknown-0gb"},
	} {
		if got := ClassKey(tc.name, tc.mib); got != tc.want {
			t.Errorf("ClassKey(%q, %d) = %q, want %q", tc.name, tc.mib, got, tc.want)
		}
	}
}

// A mock GPU's class says it is a mock; a real card's never does.
func TestMockClassKey(t *testing.T) {
	for _, tc := range []struct {
		name string
		mib  uint64
		want string
	}{
		{"NVIDIA H100 80GB HBM3", 81920, "mock-h100-80gb"},
		{"Mock NVIDIA A100-SXM4-40GB", 40960, "mock-a100-40gb"},
		{"NVIDIA B200 180GB HBM3e", 184320, "mock-b200-180gb"},
	} {
		got := MockClassKey(tc.name, tc.mib)
		if got != tc.want || !IsMockClass(got) {
			t.Errorf("MockClassKey(%q) = %q, want %q", tc.name, got, tc.want)
		}
		if real := ClassKey(tc.name, tc.mib); IsMockClass(real) {
			t.Errorf("ClassKey(%q) = %q: a real card's class reads as a mock", tc.name, real)
		}
	}
}
