// Command bindgen writes contracts/bindings.go from contracts/artifacts
// (run by `make contracts`).
package main

import (
	"fmt"
	"os"

	"github.com/aixblock/aixblock/contracts/internal/bindgen"
)

func main() {
	code, err := bindgen.Generate("contracts/artifacts", "contracts")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	if err := os.WriteFile("contracts/bindings.go", code, 0o644); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
