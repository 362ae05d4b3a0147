package contracts

import (
	"bytes"
	"os"
	"testing"

	"github.com/aixblock/aixblock/contracts/internal/bindgen"
)

// The committed bindings, production and test, must be what abigen makes
// of the committed artifacts.
func TestBindingsMatchArtifacts(t *testing.T) {
	files, err := bindgen.Generate("artifacts")
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		got, err := os.ReadFile(f.Path)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, f.Code) {
			t.Errorf("%s is stale: run `make contracts` and commit the result", f.Path)
		}
	}
}
