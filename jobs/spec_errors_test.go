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
