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
		{"Tesla T4", 15360, "nvidia-t4-15gb"},
		{"", 0, "nvidia-unknown-0gb"},
	} {
		if got := ClassKey(tc.name, tc.mib); got != tc.want {
			t.Errorf("ClassKey(%q, %d) = %q, want %q", tc.name, tc.mib, got, tc.want)
		}
	}
}
