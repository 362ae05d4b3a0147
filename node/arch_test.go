package node

import (
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// forbidden lists, per top-level package, the imports DESIGN.md keeps out of
// it (prefix match). Every package is also kept from node and cmd.
var forbidden = map[string][]string{
	"p2p":       {mod + "/market", mod + "/jobs", mod + "/gpu", mod + "/chain", mod + "/contracts", mod + "/testnet"},
	"gpu":       {mod + "/p2p", mod + "/market", mod + "/jobs", mod + "/chain", mod + "/contracts", mod + "/testnet"},
	"market":    {mod + "/jobs", mod + "/chain", mod + "/contracts", mod + "/testnet", "github.com/ethereum/go-ethereum", "github.com/moby/moby", "github.com/docker/docker"},
	"jobs":      {mod + "/market", mod + "/chain", mod + "/contracts", mod + "/testnet"},
	"chain":     {mod + "/p2p", mod + "/market", mod + "/jobs", mod + "/gpu", mod + "/testnet"},
	"contracts": {mod + "/p2p", mod + "/market", mod + "/jobs", mod + "/gpu", mod + "/chain", mod + "/testnet"},
	"testnet":   {mod + "/cmd", mod + "/node"},
	// The deals' execution is below the wiring and knows nothing of HTTP:
	// node maps its errors to status codes.
	"node/lease": {mod + "/testnet", "net/http"},
	"cmd":        {mod + "/p2p", mod + "/market", mod + "/jobs", mod + "/gpu", mod + "/chain", mod + "/contracts", mod + "/testnet"},
}

const mod = "github.com/aixblock/aixblock"

// TestImportDirection fails when an arrow of DESIGN.md's package map points
// the wrong way, and when a util/common/helpers package appears.
func TestImportDirection(t *testing.T) {
	root := filepath.Join("..")
	checked := 0
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			switch d.Name() {
			case "util", "utils", "common", "helpers":
				t.Errorf("%s: no util, common or helpers packages (DESIGN.md)", path)
			case ".git", "node_modules", "bin":
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		rel, _ := filepath.Rel(root, path)
		top := strings.Split(filepath.ToSlash(rel), "/")[0]
		if strings.HasPrefix(filepath.ToSlash(rel), "node/lease/") {
			top = "node/lease"
		}
		f, err := parser.ParseFile(token.NewFileSet(), path, nil, parser.ImportsOnly)
		if err != nil {
			return err
		}
		checked++
		for _, imp := range f.Imports {
			p := strings.Trim(imp.Path.Value, `"`)
			bad := forbidden[top]
			if top == "node/lease" && strings.HasPrefix(p, mod+"/node/lease") {
				continue
			}
			if top != "node" && top != "cmd" {
				bad = append(bad, mod+"/node", mod+"/cmd")
			}
			for _, b := range bad {
				if p == b || strings.HasPrefix(p, b+"/") {
					t.Errorf("%s imports %s, which DESIGN.md forbids for %s", rel, p, top)
				}
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if checked == 0 {
		t.Fatal("no Go files checked")
	}
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		t.Fatalf("walked %s, which is not the module root", root)
	}
}
