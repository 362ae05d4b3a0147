package bindgen

import (
	"strings"
	"testing"
)

func TestSubset(t *testing.T) {
	abi := `[{"type":"function","name":"a"},{"type":"event","name":"b"},{"type":"function","name":"c"},` +
		`{"type":"function","name":"o"},{"type":"function","name":"o"},{"type":"constructor"}]`
	for _, tc := range []struct {
		name string
		keep []string
		want string // the subset, or the error's text
	}{
		{"picked in the ABI's order", []string{"c", "a", "b"}, `[{"type":"function","name":"a"},{"type":"event","name":"b"},{"type":"function","name":"c"}]`},
		{"a name the ABI lacks", []string{"a", "gone"}, `"gone": 0 entries, want 1`},
		{"an overloaded name", []string{"o"}, `"o": 2 entries, want 1`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := subset([]byte(abi), tc.keep)
			if err != nil {
				got = err.Error()
			}
			if !strings.Contains(got, tc.want) {
				t.Fatalf("subset(%v) = %s, want %s", tc.keep, got, tc.want)
			}
		})
	}
}

// Test contracts go to their own package, never next to the production
// ones, and the production package gets the ERC-20 client.
func TestPackages(t *testing.T) {
	files, err := Generate("../../artifacts")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		path       string
		has, lacks []string
	}{
		{"bindings.go", []string{"package contracts\n", "type Escrow struct", "type TestToken struct", "type ERC20 struct"}, []string{"FeeToken", "ReentrantToken"}},
		{"testcontracts/bindings.go", []string{"package testcontracts\n", "type FeeToken struct", "type ReentrantToken struct"}, []string{"Escrow", "TestToken", "ERC20 struct"}},
	} {
		var code string
		for _, f := range files {
			if f.Path == tc.path {
				code = string(f.Code)
			}
		}
		if code == "" {
			t.Errorf("no %s generated", tc.path)
			continue
		}
		if !strings.HasPrefix(code, "// Code generated") {
			t.Errorf("%s is not marked as generated", tc.path)
		}
		for _, s := range tc.has {
			if !strings.Contains(code, s) {
				t.Errorf("%s lacks %q", tc.path, s)
			}
		}
		for _, s := range tc.lacks {
			if strings.Contains(code, s) {
				t.Errorf("%s has %q", tc.path, s)
			}
		}
	}
}
