package jobs

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
)

// Env keys that the daemon, the GPU runtime or the distributed launcher
// own. A spec may not set them: on a provider whose default runtime is
// nvidia, NVIDIA_VISIBLE_DEVICES=all would hand a CPU job every GPU, and a
// forged RANK or MASTER_ADDR would point a rank at someone else.
var (
	reservedEnvPrefixes = []struct{ prefix, hint string }{
		{"NVIDIA_", gpuEnvHint},
		{"CUDA_", gpuEnvHint},
		{"AIXBLOCK_", "the daemon sets these itself"},
		{"PET_", launcherEnvHint},
		{"MASTER_", launcherEnvHint},
		{"TORCHELASTIC_", launcherEnvHint},
	}
	reservedEnvNames = map[string]string{
		"WORLD_SIZE": launcherEnvHint, "RANK": launcherEnvHint, "NODE_RANK": launcherEnvHint,
		"LOCAL_RANK": launcherEnvHint, "LOCAL_WORLD_SIZE": launcherEnvHint, "GROUP_RANK": launcherEnvHint,
		"ROLE_RANK": launcherEnvHint, "TF_CONFIG": launcherEnvHint,
		"AMD_VISIBLE_DEVICES": gpuEnvHint, "ROCR_VISIBLE_DEVICES": gpuEnvHint,
		"HIP_VISIBLE_DEVICES": gpuEnvHint, "GPU_DEVICE_ORDINAL": gpuEnvHint,
	}
)

const (
	gpuEnvHint      = "the provider sets GPU visibility from the GPUs the deal gives the job (ask with resources.gpus)"
	launcherEnvHint = "the daemon sets the launcher contract of a distributed job (ask with distributed.nodes and distributed.procs_per_node)"
	// MaxEnvValueBytes bounds one env value of a spec.
	MaxEnvValueBytes = 32 << 10
)

// reservedEnv says why a spec may not set key, or "" when it may. Names
// are compared without case: the check costs nothing and a runtime that
// folds case cannot be fooled.
func reservedEnv(key string) string {
	k := strings.ToUpper(key)
	if hint, ok := reservedEnvNames[k]; ok {
		return hint
	}
	for _, p := range reservedEnvPrefixes {
		if strings.HasPrefix(k, p.prefix) {
			return p.hint
		}
	}
	return ""
}

// checkSpecEnv validates a spec's env: names, reserved keys, values.
func checkSpecEnv(env map[string]string) error {
	for k, v := range env {
		if !envRE.MatchString(k) {
			return specErr("env", "%q is not a variable name", k)
		}
		if hint := reservedEnv(k); hint != "" {
			return specErr("env."+k, "reserved: %s", hint)
		}
		if len(v) > MaxEnvValueBytes {
			return specErr("env."+k, "%d bytes, limit %d", len(v), MaxEnvValueBytes)
		}
		if strings.IndexByte(v, 0) >= 0 {
			return specErr("env."+k, "holds a NUL byte")
		}
	}
	return nil
}

// The launcher's keys, as Rendezvous.Env writes them: the only ones a
// distributed "go" request may carry. ints must be decimal numbers.
var goEnvKeys = map[string]struct {
	isInt bool
	max   int
}{
	"MASTER_ADDR": {false, 255}, "MASTER_PORT": {true, 5}, "WORLD_SIZE": {true, 10},
	"RANK": {true, 10}, "NODE_RANK": {true, 10}, "LOCAL_RANK": {true, 10}, "LOCAL_WORLD_SIZE": {true, 10},
	"PET_NNODES": {true, 10}, "PET_NPROC_PER_NODE": {true, 10}, "PET_NODE_RANK": {true, 10},
	"PET_MASTER_ADDR": {false, 255}, "PET_MASTER_PORT": {true, 5},
	"TF_CONFIG": {false, 64 << 10},
}

// ValidateGoEnv checks the env of a distributed job's "go" request, which
// comes from another daemon over the network and goes into the container:
// only the launcher's own keys, each once, with bounded values free of
// NUL and line breaks. The error names the first bad entry.
func ValidateGoEnv(env []string) error {
	if len(env) > len(goEnvKeys) {
		return fmt.Errorf("go request env: %d entries, at most %d (the launcher's keys)", len(env), len(goEnvKeys))
	}
	seen := map[string]bool{}
	for i, kv := range env {
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			return fmt.Errorf("go request env[%d]: %.64q is not KEY=VALUE", i, kv)
		}
		want, known := goEnvKeys[k]
		if !known {
			return fmt.Errorf("go request env %.64q: not a launcher key (the gang sends only MASTER_*, RANK, WORLD_SIZE, PET_*, TF_CONFIG and the like)", k)
		}
		if seen[k] {
			return fmt.Errorf("go request env %s: given twice", k)
		}
		seen[k] = true
		switch {
		case len(v) > want.max:
			return fmt.Errorf("go request env %s: %d bytes, limit %d", k, len(v), want.max)
		case strings.ContainsAny(v, "\x00\n\r"):
			return fmt.Errorf("go request env %s: holds a NUL or a line break", k)
		case want.isInt:
			if n, err := strconv.Atoi(v); err != nil || n < 0 {
				return fmt.Errorf("go request env %s: %.32q is not a non-negative number", k, v)
			}
		case k == "TF_CONFIG" && !json.Valid([]byte(v)):
			return fmt.Errorf("go request env TF_CONFIG: not JSON")
		}
	}
	return nil
}

// setEnv sets each KEY=VALUE of kv in env, replacing an earlier entry of
// the same key, so that what the daemon sets last is what the job sees
// (and no key appears twice for a runtime to pick between).
func setEnv(env []string, kv ...string) []string {
	for _, e := range kv {
		k, _, _ := strings.Cut(e, "=")
		replaced := false
		for i, old := range env {
			if oldKey, _, _ := strings.Cut(old, "="); oldKey == k {
				env[i], replaced = e, true
				break
			}
		}
		if !replaced {
			env = append(env, e)
		}
	}
	return env
}
