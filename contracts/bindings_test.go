package contracts

import (
	"bytes"
	"os"
	"testing"

	"github.com/aixblock/aixblock/contracts/internal/bindgen"
)

// The committed bindings must be what abigen makes of the committed
// artifacts.
func TestBindingsMatchArtifacts(t *testing.T) {
	want, err := bindgen.Generate("artifacts", "contracts")
	if err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile("bindings.go")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatal("bindings.go is stale: run `make contracts` and commit the result")
	}
}
