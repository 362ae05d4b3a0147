package jobs

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestExamplesParse(t *testing.T) {
	files, _ := filepath.Glob("examples/*.yaml")
	if len(files) < 2 {
		t.Fatalf("%d examples", len(files))
	}
	for _, f := range files {
		b, _ := os.ReadFile(f)
		if _, err := ParseSpec(b); err != nil {
			t.Errorf("%s: %v", f, err)
		}
	}
}

func TestSpecRefusals(t *testing.T) {
	base := "name: x\nimage: alpine:3\n"
	for _, tc := range []struct {
		name, yaml, field string
	}{
		{"privileged", base + "privileged: true\n", "privileged"},
		{"host mounts", base + "volumes: [\"/:/host\"]\n", "volumes"},
		{"devices", base + "devices: [\"/dev/sda\"]\n", "devices"},
		{"unknown field", base + "colour: blue\n", "colour"},
		{"input escapes", base + "inputs: [{cid: bafkqaaa, path: /inputs/../etc}]\n", "inputs[0].path"},
		{"input outside", base + "inputs: [{cid: bafkqaaa, path: /etc/passwd}]\n", "inputs[0].path"},
		{"input is the root", base + "inputs: [{cid: bafkqaaa, path: /inputs}]\n", "inputs[0].path"},
		{"relative output", base + "outputs: [outputs/x]\n", "outputs[0]"},
		{"output escapes", base + "outputs: [/outputs/../../root]\n", "outputs[0]"},
		{"bad cid", base + "inputs: [{cid: nope, path: /inputs/a}]\n", "inputs[0].cid"},
		{"no image", "name: x\n", "image"},
		{"bad timeout", base + "timeouts: {execution: soon}\n", "timeouts.execution"},
		{"bad env", base + "env: {\"1BAD\": x}\n", "env"},
		{"negative gpus", base + "resources: {gpus: -1}\n", "resources.gpus"},
		{"bad framework", base + "distributed: {nodes: 2, framework: mpi}\n", "distributed.framework"},
		{"bad price", base + "max_price: lots\n", "max_price"},
		{"not yaml", "{{{", "invalid job spec"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseSpec([]byte(tc.yaml))
			if err == nil || !errors.Is(err, ErrSpec) || !strings.Contains(err.Error(), tc.field) {
				t.Fatalf("got %v, want an error naming %q", err, tc.field)
			}
		})
	}
}

// Attack 6: env keys that the GPU runtime, the daemon or the launcher
// own are refused in specs, with the key named.
func TestSpecReservedEnv(t *testing.T) {
	for _, key := range []string{
		"NVIDIA_VISIBLE_DEVICES", "NVIDIA_DRIVER_CAPABILITIES", "nvidia_visible_devices", "CUDA_VISIBLE_DEVICES",
		"AIXBLOCK_JOB_ID", "MASTER_ADDR", "MASTER_PORT", "WORLD_SIZE", "RANK", "NODE_RANK", "LOCAL_RANK",
		"LOCAL_WORLD_SIZE", "PET_NNODES", "PET_MASTER_ADDR", "TF_CONFIG", "TORCHELASTIC_RUN_ID",
		"AMD_VISIBLE_DEVICES", "HIP_VISIBLE_DEVICES",
	} {
		t.Run(key, func(t *testing.T) {
			_, err := ParseSpec([]byte("name: x\nimage: alpine:3\nenv: {" + key + ": all}\n"))
			if err == nil || !errors.Is(err, ErrSpec) || !strings.Contains(err.Error(), "env."+key) || !strings.Contains(err.Error(), "reserved") {
				t.Fatalf("got %v, want a refusal naming env.%s", err, key)
			}
		})
	}
	for _, tc := range []struct{ name, yaml, want string }{
		{"NUL in a value", "env: {A: \"x\\0y\"}\n", "env.A"},
		{"value too long", "env: {A: \"" + strings.Repeat("x", MaxEnvValueBytes+1) + "\"}\n", "env.A: 32769 bytes"},
		{"daemon namespace image", "image: aixblock-ipfs/bafkqaaa:latest\n", "image"},
		{"disk too small", "resources: {disk_mib: 1}\n", "resources.disk_mib"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			y := "name: x\n" + tc.yaml
			if !strings.Contains(tc.yaml, "image:") {
				y += "image: alpine:3\n"
			}
			if _, err := ParseSpec([]byte(y)); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error naming %s", err, tc.want)
			}
		})
	}
	// What users legitimately set still passes.
	if _, err := ParseSpec([]byte("name: x\nimage: alpine:3\nenv: {NCCL_DEBUG: INFO, HOME: /tmp, SHARD: /inputs/s, MY_RANK_NAME: a}\n")); err != nil {
		t.Fatal(err)
	}
}

// The env of a distributed "go" request comes from another daemon: only
// the launcher's keys, bounded and single-line.
func TestValidateGoEnv(t *testing.T) {
	good := Rendezvous{Nodes: 3, ProcsPerNode: 2, NodeRank: 1, MasterAddr: "10.0.0.1", MasterPort: 29500,
		Workers: []string{"10.0.0.1:1", "10.0.0.2:1", "10.0.0.3:1"}, Framework: "tensorflow"}
	if err := ValidateGoEnv(good.Env()); err != nil {
		t.Fatalf("the launcher's own env: %v", err)
	}
	if err := ValidateGoEnv(nil); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		env  []string
		want string
	}{
		{"GPU visibility", []string{"NVIDIA_VISIBLE_DEVICES=all"}, "NVIDIA_VISIBLE_DEVICES"},
		{"CUDA", []string{"CUDA_VISIBLE_DEVICES=0,1"}, "CUDA_VISIBLE_DEVICES"},
		{"daemon key", []string{"AIXBLOCK_JOB_ID=other"}, "AIXBLOCK_JOB_ID"},
		{"loader", []string{"LD_PRELOAD=/inputs/x.so"}, "LD_PRELOAD"},
		{"not KEY=VALUE", []string{"RANK"}, "env[0]"},
		{"twice", []string{"RANK=1", "RANK=0"}, "RANK: given twice"},
		{"newline", []string{"MASTER_ADDR=10.0.0.1\nNVIDIA_VISIBLE_DEVICES=all"}, "MASTER_ADDR"},
		{"NUL", []string{"MASTER_ADDR=a\x00b"}, "MASTER_ADDR"},
		{"too long", []string{"MASTER_ADDR=" + strings.Repeat("a", 300)}, "MASTER_ADDR: 300 bytes"},
		{"not a number", []string{"RANK=-1"}, "RANK"},
		{"bad TF_CONFIG", []string{"TF_CONFIG={"}, "TF_CONFIG"},
		{"too many", append(good.Env(), "X=1", "Y=2", "Z=3"), "entries"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := ValidateGoEnv(tc.env); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want a refusal naming %q", err, tc.want)
			}
		})
	}
}

// The daemon's keys win over anything before them, and no key appears
// twice.
func TestSetEnv(t *testing.T) {
	got := setEnv([]string{"A=1", "NVIDIA_VISIBLE_DEVICES=all", "B=2"}, "NVIDIA_VISIBLE_DEVICES=none", "C=3")
	if strings.Join(got, " ") != "A=1 NVIDIA_VISIBLE_DEVICES=none B=2 C=3" {
		t.Fatalf("%q", got)
	}
}
