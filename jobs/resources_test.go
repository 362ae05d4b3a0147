package jobs

import "testing"

func TestResourcesNormalize(t *testing.T) {
	for _, c := range []struct {
		in, want string
	}{
		{"", ""},
		{"nvidia-h100-80gb", "nvidia-h100-80gb"},
		{"NVIDIA-H100-80GB", "nvidia-h100-80gb"},
		{" Nvidia-A100-40GB\t", "nvidia-a100-40gb"},
	} {
		r := Resources{GPUClass: c.in, GPUs: 2, CPU: 1.5}
		r.Normalize()
		if r.GPUClass != c.want {
			t.Errorf("Normalize(%q): class %q, want %q", c.in, r.GPUClass, c.want)
		}
		if r.GPUs != 2 || r.CPU != 1.5 {
			t.Errorf("Normalize(%q) changed more than the class: %+v", c.in, r)
		}
	}
}

// A parsed spec's class is normal already: the hash both sides sign and
// every later comparison see the lowercase key.
func TestSpecNormalizesGPUClass(t *testing.T) {
	s, err := ParseSpec([]byte("image: busybox\nresources:\n  gpus: 1\n  gpu_class: NVIDIA-H100-80GB\n"))
	if err != nil {
		t.Fatal(err)
	}
	if s.Resources.GPUClass != "nvidia-h100-80gb" {
		t.Fatalf("class %q, want nvidia-h100-80gb", s.Resources.GPUClass)
	}
}

func TestResourcesCPUCores(t *testing.T) {
	for _, c := range []struct {
		cpu  float64
		want int
	}{
		{0, 0},
		{0.1, 1},
		{1, 1},
		{1.5, 2},
		{2, 2},
		{2.0001, 3},
		{64, 64},
	} {
		if got := (Resources{CPU: c.cpu}).CPUCores(); got != c.want {
			t.Errorf("CPUCores(%g) = %d, want %d", c.cpu, got, c.want)
		}
	}
}
