// Package bindgen turns the compiled artifacts into Go bindings with
// go-ethereum's abigen (v2). `make contracts` writes them; a test in
// package contracts regenerates them and fails on drift.
package bindgen

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/ethereum/go-ethereum/accounts/abi/abigen"
)

type artifact struct {
	ContractName string          `json:"contractName"`
	ABI          json.RawMessage `json:"abi"`
	Bytecode     string          `json:"bytecode"`
}

// Generate reads every artifacts/*.json under dir and returns the bindings
// file for package pkg.
func Generate(dir, pkg string) ([]byte, error) {
	files, err := filepath.Glob(filepath.Join(dir, "*.json"))
	if err != nil {
		return nil, err
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("bindgen: no artifacts in %s (run make contracts)", dir)
	}
	sort.Strings(files)
	var types, abis, codes []string
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			return nil, err
		}
		var a artifact
		if err := json.Unmarshal(raw, &a); err != nil {
			return nil, fmt.Errorf("bindgen: %s: %w", f, err)
		}
		if a.ContractName == "" || len(a.ABI) == 0 || !strings.HasPrefix(a.Bytecode, "0x") {
			return nil, fmt.Errorf("bindgen: %s: not an artifact (contractName, abi, bytecode)", f)
		}
		types = append(types, a.ContractName)
		abis = append(abis, string(a.ABI))
		codes = append(codes, a.Bytecode)
	}
	code, err := abigen.BindV2(types, abis, codes, pkg, map[string]string{}, map[string]string{})
	if err != nil {
		return nil, fmt.Errorf("bindgen: %w", err)
	}
	return []byte(code), nil
}
