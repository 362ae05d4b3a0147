// Command bindgen writes the Go bindings (contracts/bindings.go and
// contracts/testcontracts/bindings.go) from contracts/artifacts; `make
// contracts` runs it from the repository root.
package main

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/aixblock/aixblock/contracts/internal/bindgen"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "bindgen:", err)
		os.Exit(1)
	}
}

func run() error {
	files, err := bindgen.Generate("contracts/artifacts")
	if err != nil {
		return err
	}
	for _, f := range files {
		p := filepath.Join("contracts", f.Path)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(p, f.Code, 0o644); err != nil {
			return err
		}
	}
	return nil
}
