package jobs

import (
	"strings"
	"testing"
)

// Unknown fields are named as the spec names them, with a suggestion.
func TestUnknownFieldErrors(t *testing.T) {
	for name, tc := range map[string]struct{ yaml, want string }{
		"resources typo": {"name: x\nimage: busybox\nresources: {gpu: 1}\n", `unknown field "gpu" in resources (did you mean gpus?)`},
		"top level":      {"name: x\nimage: busybox\nimgae: y\n", `unknown field "imgae" in the spec (did you mean image?)`},
		"timeouts":       {"name: x\nimage: busybox\ntimeouts: {exec: 1m}\n", `unknown field "exec" in timeouts (did you mean execution?)`},
		"nothing close":  {"name: x\nimage: busybox\nresources: {zzzzzzzz: 1}\n", `unknown field "zzzzzzzz" in resources`},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := ParseSpec([]byte(tc.yaml))
			if err == nil || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "jobs.") {
				t.Fatalf("error %v, want one containing %q and no Go type", err, tc.want)
			}
		})
	}
}

// verify and require are refused where they cannot work, with the field
// named and what to do; good ones parse.
func TestVerifyAndRequire(t *testing.T) {
	const head = "image: busybox\n"
	for name, tc := range map[string]struct{ yaml, want string }{
		"one replica":          {head + "verify: {replicas: 1}\n", "verify.replicas: 1: want 2 to 5"},
		"no mode":              {head + "verify: {outputs: [/outputs/a]}\n", "verify: give replicas (2 to 5) or sample"},
		"both modes":           {head + "verify: {replicas: 2, sample: 5%}\n", "verify: replicas and sample: choose one"},
		"a share with no %":    {head + "verify: {sample: \"5\"}\n", `verify.sample: "5": want a share such as 5%`},
		"over 100%":            {head + "verify: {sample: 150%}\n", "verify.sample"},
		"holdback over half":   {head + "verify: {replicas: 2, holdback: 60%}\n", `verify.holdback: "60%": want a share of the pay from 0.01% to 50%`},
		"holdback no %":        {head + "verify: {replicas: 2, holdback: \"0.2\"}\n", `verify.holdback: "0.2"`},
		"a holdback":           {head + "verify: {replicas: 2, holdback: 20%}\n", ""},
		"outputs outside":      {head + "verify: {replicas: 2, outputs: [/etc/passwd]}\n", "verify.outputs[0]"},
		"a service":            {head + "kind: service\nports: [{port: 80}]\nverify: {replicas: 2}\n", "verify: only a batch job"},
		"verified with no GPU": {head + "require: {verified: true}\n", "require.verified: proof of GPU verifies GPUs"},
		"replicas":             {head + "verify: {replicas: 3, outputs: [/outputs/m.json]}\n", ""},
		"a sample":             {head + "verify: {sample: 5%}\n", ""},
		"a comparator":         {head + "verify: {replicas: 2, comparator: {image: cmp, command: [tolerance, \"1e-9\"]}}\n", ""},
		"comparator, no image": {head + "verify: {replicas: 2, comparator: {command: [c]}}\n", "verify.comparator.image: required"},
		"comparator, bad image": {head + "verify: {replicas: 2, comparator: {image: \"Bad Image\", command: [c]}}\n",
			`verify.comparator.image: "Bad Image" is not an image reference`},
		"comparator from ipfs": {head + "verify: {replicas: 2, comparator: {image: \"ipfs://bafy\", command: [c]}}\n",
			"verify.comparator.image"},
		"comparator, no command": {head + "verify: {replicas: 2, comparator: {image: cmp}}\n", "verify.comparator: give command"},
		"verified GPUs":          {head + "resources: {gpus: 1}\nrequire: {verified: true}\n", ""},
	} {
		t.Run(name, func(t *testing.T) {
			s, err := ParseSpec([]byte(tc.yaml))
			if tc.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				if s.Verify != nil && s.Verify.Sample != "" && s.Verify.SampleRate() != 0.05 {
					t.Fatalf("sample rate %v", s.Verify.SampleRate())
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one containing %q", err, tc.want)
			}
		})
	}
}
