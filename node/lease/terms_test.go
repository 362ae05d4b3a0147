package lease

import (
	"strings"
	"testing"

	"github.com/aixblock/aixblock/jobs"
	"github.com/aixblock/aixblock/market"
)

// Attack 6: the deal binds the spec's hash, but the offer promised 60 s and
// little memory while the spec asks for 1000 h and large resources; the
// deposit, the duration limit and the GPU hold all followed the offer. The
// provider refuses such a spec, naming the field.
func TestSpecWithinTerms(t *testing.T) {
	deal := &market.Deal{DealTerms: market.DealTerms{ID: "d", MaxDurationS: 60, GPUs: []string{"GPU-0"}, GPUClass: "nvidia-h100-80gb"}}
	req := market.Requirements{GPUs: 1, CPUCores: 2, MemoryMiB: 4096, DiskMiB: 100}
	for _, c := range []struct {
		name, js, want string
	}{
		{"as offered", `{"timeouts":{"execution":"60s"},"resources":{"gpus":1,"cpu":2,"memory_mib":4096,"disk_mib":100}}`, ""},
		{"defaults", `{"timeouts":{"execution":"30s"}}`, ""},
		{"1000 h", `{"timeouts":{"execution":"1000h"}}`, "timeouts.execution: 1000h0m0s is longer than the deal's 1m0s"},
		{"default hour on a minute's deal", `{}`, "timeouts.execution: 1h0m0s is longer"},
		{"more GPUs", `{"timeouts":{"execution":"1m"},"resources":{"gpus":8}}`, "resources.gpus: 8, the deal holds 1"},
		{"other class", `{"timeouts":{"execution":"1m"},"resources":{"gpu_class":"nvidia-a100"}}`, "resources.gpu_class"},
		{"more CPU", `{"timeouts":{"execution":"1m"},"resources":{"cpu":2.5}}`, "resources.cpu: 2.5, the offer asked 2 cores"},
		{"more memory", `{"timeouts":{"execution":"1m"},"resources":{"memory_mib":65536}}`, "resources.memory_mib: 65536, the offer asked 4096"},
		{"more disk", `{"timeouts":{"execution":"1m"},"resources":{"disk_mib":1000000}}`, "resources.disk_mib"},
		{"GPU memory not offered", `{"timeouts":{"execution":"1m"},"resources":{"gpu_memory_mib":81920}}`, "resources.gpu_memory_mib"},
	} {
		t.Run(c.name, func(t *testing.T) {
			js := `{"image":"x"` + strings.TrimPrefix(c.js, "{")
			if c.js != "{}" {
				js = `{"image":"x",` + strings.TrimPrefix(c.js, "{")
			}
			spec, err := jobs.ParseSpec([]byte(js))
			if err != nil {
				t.Fatal(err)
			}
			err = specWithinTerms(deal, req, spec)
			if c.want == "" && err != nil || c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)) {
				t.Fatalf("got %v, want %q", err, c.want)
			}
		})
	}
}
