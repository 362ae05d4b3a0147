package node

import (
	"slices"
	"testing"
)

// Every key of config.json is in the reference that `aixblock config show
// --defaults` prints, and the reference names no key that is gone.
func TestConfigReferenceCoversEveryKey(t *testing.T) {
	keys := configKeys()
	var documented []string
	for _, k := range ConfigReference() {
		if k.Meaning == "" || k.Default == "" {
			t.Errorf("%s: no default or meaning", k.Key)
		}
		documented = append(documented, k.Key)
	}
	for _, k := range keys {
		if !slices.Contains(documented, k) {
			t.Errorf("config key %q is not in ConfigReference", k)
		}
	}
	for _, k := range documented {
		if !slices.Contains(keys, k) {
			t.Errorf("ConfigReference names %q, which Config does not have", k)
		}
	}
}
