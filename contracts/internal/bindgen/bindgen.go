// Package bindgen turns the compiled artifacts into Go bindings with
// go-ethereum's abigen (v2), one generated file per Go package:
//
//   - bindings.go (package contracts): the production contracts of src/
//     and ERC20, the part of the ERC-20 interface that chain calls, cut
//     from TestToken's ABI and bound without bytecode (it talks to any
//     token, deploys none);
//   - testcontracts/bindings.go (package testcontracts): the contracts of
//     src/test/, which exist only for tests.
//
// `make contracts` writes them; a test in package contracts regenerates
// them and fails on drift.
package bindgen

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	"github.com/ethereum/go-ethereum/accounts/abi/abigen"
)

// File is one generated file; Path is relative to the contracts directory.
type File struct {
	Path string
	Code []byte
}

type artifact struct {
	ContractName string          `json:"contractName"`
	SourceName   string          `json:"sourceName"`
	ABI          json.RawMessage `json:"abi"`
	Bytecode     string          `json:"bytecode"`
}

// testSources are where the test-only contracts live (compile.js writes
// each artifact's sourceName relative to the contracts directory).
const testSources = "src/test/"

// erc20 is the production ERC-20 client: only what chain calls, and the
// standard errors (ERC-6093) so that a token's revert reads as its name.
var erc20 = struct {
	name, from string
	keep       []string
}{
	name: "ERC20",
	from: "TestToken",
	keep: []string{
		"allowance", "approve", "balanceOf", "decimals", "symbol",
		"ERC20InsufficientAllowance", "ERC20InsufficientBalance", "ERC20InvalidApprover",
		"ERC20InvalidReceiver", "ERC20InvalidSender", "ERC20InvalidSpender",
	},
}

type pkg struct {
	types, abis, codes []string
}

func (p *pkg) add(name, abi, code string) {
	p.types, p.abis, p.codes = append(p.types, name), append(p.abis, abi), append(p.codes, code)
}

// Generate reads every *.json artifact in dir and returns the bindings
// files, production first.
func Generate(dir string) ([]File, error) {
	files, err := filepath.Glob(filepath.Join(dir, "*.json"))
	if err != nil {
		return nil, err
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("bindgen: no artifacts in %s (run make contracts)", dir)
	}
	sort.Strings(files)
	var prod, test pkg
	var erc20From json.RawMessage
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			return nil, err
		}
		var a artifact
		if err := json.Unmarshal(raw, &a); err != nil {
			return nil, fmt.Errorf("bindgen: %s: %w", f, err)
		}
		if a.ContractName == "" || a.SourceName == "" || len(a.ABI) == 0 || !strings.HasPrefix(a.Bytecode, "0x") {
			return nil, fmt.Errorf("bindgen: %s: not an artifact (contractName, sourceName, abi, bytecode)", f)
		}
		if strings.HasPrefix(a.SourceName, testSources) {
			test.add(a.ContractName, string(a.ABI), a.Bytecode)
			continue
		}
		prod.add(a.ContractName, string(a.ABI), a.Bytecode)
		if a.ContractName == erc20.from {
			erc20From = a.ABI
		}
	}
	if erc20From == nil {
		return nil, fmt.Errorf("bindgen: no %s artifact to cut %s from", erc20.from, erc20.name)
	}
	sub, err := subset(erc20From, erc20.keep)
	if err != nil {
		return nil, fmt.Errorf("bindgen: %s from %s: %w", erc20.name, erc20.from, err)
	}
	prod.add(erc20.name, sub, "")

	var out []File
	for _, p := range []struct {
		path, name string
		pkg        pkg
	}{{"bindings.go", "contracts", prod}, {"testcontracts/bindings.go", "testcontracts", test}} {
		if len(p.pkg.types) == 0 {
			return nil, fmt.Errorf("bindgen: no contracts for package %s", p.name)
		}
		code, err := abigen.BindV2(p.pkg.types, p.pkg.abis, p.pkg.codes, p.name, map[string]string{}, map[string]string{})
		if err != nil {
			return nil, fmt.Errorf("bindgen: package %s: %w", p.name, err)
		}
		out = append(out, File{Path: p.path, Code: []byte(code)})
	}
	return out, nil
}

// subset is the ABI of the entries of abi named in keep, in abi's order;
// a name that abi lacks (or has twice, overloaded) is an error, so that
// the subset cannot shrink or grow unnoticed.
func subset(abi json.RawMessage, keep []string) (string, error) {
	var entries []json.RawMessage
	if err := json.Unmarshal(abi, &entries); err != nil {
		return "", err
	}
	found := map[string]int{}
	var out []json.RawMessage
	for _, e := range entries {
		var head struct{ Name string }
		if err := json.Unmarshal(e, &head); err != nil {
			return "", err
		}
		if head.Name != "" && slices.Contains(keep, head.Name) {
			found[head.Name]++
			out = append(out, e)
		}
	}
	for _, k := range keep {
		if found[k] != 1 {
			return "", fmt.Errorf("%q: %d entries, want 1", k, found[k])
		}
	}
	b, err := json.Marshal(out)
	return string(b), err
}
