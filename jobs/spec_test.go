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
