package api

import (
	"bytes"
	"encoding/json"
	"reflect"
	"sort"
	"strings"
	"testing"

	"github.com/aixblock/aixblock/jobs"
)

// An offer's JSON keeps the names it had when it was a struct of its own
// with integer CPU cores: a body an older CLI sends decodes field for
// field (the daemon refuses unknown fields), and what this one sends uses
// no other names.
func TestOfferRequestWire(t *testing.T) {
	old := `{"gpus":2,"gpu_class":"NVIDIA-H100-80GB","gpu_memory_mib":81920,"cpu":4,"memory_mib":8192,"disk_mib":100,` +
		`"max_price":"1.5","token":"native","duration":"2h","image":"busybox","spec_hash":"ab"}`
	dec := json.NewDecoder(strings.NewReader(old))
	dec.DisallowUnknownFields()
	var got OfferRequest
	if err := dec.Decode(&got); err != nil {
		t.Fatal(err)
	}
	want := OfferRequest{
		Resources: jobs.Resources{GPUs: 2, GPUClass: "NVIDIA-H100-80GB", GPUMemoryMiB: 81920, CPU: 4, MemoryMiB: 8192, DiskMiB: 100},
		MaxPrice:  "1.5", Token: "native", Duration: "2h", Image: "busybox", SpecHash: "ab",
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("decoded %+v\nwant    %+v", got, want)
	}
	b, err := json.Marshal(want)
	if err != nil {
		t.Fatal(err)
	}
	var keys map[string]any
	if err := json.Unmarshal(b, &keys); err != nil {
		t.Fatal(err)
	}
	var names []string
	for k := range keys {
		names = append(names, k)
	}
	sort.Strings(names)
	wantNames := "cpu disk_mib duration gpu_class gpu_memory_mib gpus image max_price memory_mib spec_hash token"
	if strings.Join(names, " ") != wantNames {
		t.Fatalf("keys %v, want %s", names, wantNames)
	}
	// The CPU went from cores to a fraction: whole numbers still read as
	// integers to an older daemon.
	if !bytes.Contains(b, []byte(`"cpu":4,`)) {
		t.Fatalf("cpu not written as an integer: %s", b)
	}
}
