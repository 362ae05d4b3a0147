package main

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestTorchDDP runs real PyTorch: a 2-node gloo DDP training across two
// providers, initialised from the launcher contract's variables alone
// (init_process_group("gloo") with the env:// defaults). The script
// travels as an input CID. It needs the python3-torch image (about 2
// minutes and 1.3 GB to build once): make e2e-torch builds it and sets
// AIXBLOCK_E2E_TORCH=1.
//
// Debian's torch 1.13 under Python 3.11 cannot start torchrun (its
// argument parser fails on the --redirects/--tee defaults), so the script
// runs under python3 directly; the PET_* variables are for torchrun.
func TestTorchDDP(t *testing.T) {
	if os.Getenv("AIXBLOCK_E2E_TORCH") != "1" {
		t.Skip("real PyTorch: run make e2e-torch")
	}
	jobDocker(t)
	build := exec.Command("bash", "../../jobs/testdata/torch/image.sh")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("torch image: %v\n%s", err, out)
	} else {
		t.Logf("%s", strings.TrimSpace(string(out)))
	}
	repos, _ := ddpNetwork(t, 2)
	req := repos[2]
	src := t.TempDir()
	script, _ := os.ReadFile("../../jobs/testdata/torch/ddp.py")
	os.WriteFile(filepath.Join(src, "ddp.py"), script, 0o644)
	var added struct {
		CID string `json:"cid"`
	}
	runJSON(t, req, &added, "data", "add", src)
	spec := filepath.Join(t.TempDir(), "torch.yaml")
	os.WriteFile(spec, []byte("name: torch-ddp\nimage: aixblock-test/torch:latest\n"+
		"command: [python3, /inputs/train/ddp.py]\n"+
		"resources: {gpus: 1, memory_mib: 2048}\n"+
		"distributed: {nodes: 2, framework: pytorch}\nmax_price: \"20\"\n"+
		"inputs: [{cid: "+added.CID+", path: /inputs/train}]\n"+
		"env: {HOME: /tmp}\n"), 0o600)
	id := strings.TrimSpace(mustRun(t, req, "job", "submit", spec))
	s := waitState(t, req, id, terminal)
	logs := mustRun(t, req, "job", "logs", id)
	t.Logf("logs:\n%s", logs)
	if s.State != "completed" {
		t.Fatalf("torch job: %+v", s)
	}
	type final struct {
		Rank       int       `json:"rank"`
		First      float64   `json:"first_loss"`
		Last       float64   `json:"last_loss"`
		Params     []float64 `json:"params"`
		RanksEqual bool      `json:"ranks_equal"`
	}
	var finals []final
	for _, l := range strings.Split(logs, "\n") {
		if i := strings.Index(l, "final "); i >= 0 {
			var f final
			if err := json.Unmarshal([]byte(l[i+len("final "):]), &f); err != nil {
				t.Fatalf("%q: %v", l, err)
			}
			finals = append(finals, f)
		}
	}
	if len(finals) != 2 {
		t.Fatalf("%d final lines, want one per rank", len(finals))
	}
	for _, f := range finals {
		if !(f.Last < f.First/10) || !f.RanksEqual {
			t.Fatalf("rank %d: loss %g -> %g, ranks equal %v", f.Rank, f.First, f.Last, f.RanksEqual)
		}
	}
	if a, b := finals[0].Params, finals[1].Params; len(a) != 2 || a[0] != b[0] || a[1] != b[1] {
		t.Fatalf("parameters differ across ranks: %v vs %v", a, b)
	}
	out := filepath.Join(t.TempDir(), "out")
	mustRun(t, req, "job", "results", id, "-o", out)
	if st, err := os.Stat(filepath.Join(out, "rank-0", "model.pt")); err != nil || st.Size() == 0 {
		t.Fatalf("rank-0/model.pt in the result: %v", err)
	}
}
