package jobs

import (
	"reflect"
	"regexp"
	"strings"
)

// The YAML decoder names Go types in its errors ("field gpu not found in
// type jobs.Resources"); a user knows the spec's own field names. specSections
// maps each type to where it sits in a spec.
var specSections = map[string]reflect.Type{
	"jobs.Spec":        reflect.TypeOf(Spec{}),
	"jobs.Resources":   reflect.TypeOf(Resources{}),
	"jobs.Input":       reflect.TypeOf(Input{}),
	"jobs.Distributed": reflect.TypeOf(Distributed{}),
	"jobs.Timeouts":    reflect.TypeOf(Timeouts{}),
	"jobs.Retry":       reflect.TypeOf(Retry{}),
	"jobs.Port":        reflect.TypeOf(Port{}),
	"jobs.Restart":     reflect.TypeOf(Restart{}),
	"jobs.Ready":       reflect.TypeOf(Ready{}),
}

var sectionNames = map[string]string{
	"jobs.Spec":        "the spec",
	"jobs.Resources":   "resources",
	"jobs.Input":       "inputs[]",
	"jobs.Distributed": "distributed",
	"jobs.Timeouts":    "timeouts",
	"jobs.Retry":       "retry",
	"jobs.Port":        "ports[]",
	"jobs.Restart":     "restart",
	"jobs.Ready":       "ready",
}

var unknownFieldRE = regexp.MustCompile(`field (\S+) not found in type (jobs\.\w+)`)

// friendlyYAMLError rewrites the decoder's unknown-field errors in spec
// terms, with the closest known field as a suggestion; other text is kept.
func friendlyYAMLError(msg string) string {
	msg = strings.TrimPrefix(msg, "yaml: ")
	return unknownFieldRE.ReplaceAllStringFunc(msg, func(m string) string {
		sub := unknownFieldRE.FindStringSubmatch(m)
		field, typ := sub[1], sub[2]
		t, ok := specSections[typ]
		if !ok {
			return m
		}
		out := "unknown field \"" + field + "\" in " + sectionNames[typ]
		if s := closestField(field, t); s != "" {
			out += " (did you mean " + s + "?)"
		}
		return out
	})
}

// closestField is t's YAML field nearest to name (a prefix, or at most two
// edits away), or "".
func closestField(name string, t reflect.Type) string {
	best, bestD := "", 3
	for i := 0; i < t.NumField(); i++ {
		f, _, _ := strings.Cut(t.Field(i).Tag.Get("yaml"), ",")
		if f == "" || f == "-" {
			continue
		}
		d := editDistance(strings.ToLower(name), f)
		if strings.HasPrefix(f, strings.ToLower(name)) || strings.HasPrefix(strings.ToLower(name), f) {
			d = min(d, 1)
		}
		if d < bestD {
			best, bestD = f, d
		}
	}
	return best
}

func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur := make([]int, len(b)+1)
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev = cur
	}
	return prev[len(b)]
}
