package node

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"os/exec"
	"path"
	"slices"
	"strings"
	"testing"
)

// m prefixes this module's packages in the rules.
const m = "github.com/aixblock/aixblock/"

// depRule bans packages from what pkg depends on. A pattern is an import
// path, or a tree of them ending in "/..." as the go command reads it.
type depRule struct {
	pkg string
	// deps may not appear anywhere among pkg's dependencies, direct or
	// not: the arrows of the package map in docs/architecture.md.
	deps []string
	// imports may not be imported by pkg itself. Used where a transitive
	// ban cannot hold because a type pkg is allowed brings the package in
	// (market's types bring libp2p, jobs' bring the Docker client, chain's
	// go-ethereum), and what the map rules is the package's own code.
	imports []string
}

// Every module package below node: p2p, content, overlay, gpu,
// market, jobs, chain, contracts, testnet and internal never depend on
// node or cmd.
var (
	above  = []string{m + "node/...", m + "cmd/..."}
	leaves = []string{m + "p2p/...", m + "gpu/...", m + "market/...", m + "jobs/...", m + "chain/...", m + "contracts/...", m + "testnet/..."}
)

func and(lists ...[]string) []string { return slices.Concat(lists...) }

// depRules is the package map of docs/architecture.md (its "may import"
// column) as bans.
var depRules = []depRule{
	// The network layer knows nothing of what travels over it.
	{pkg: m + "p2p/...", deps: and(above, []string{m + "gpu/...", m + "market/...", m + "jobs/...", m + "chain/...", m + "contracts/...", m + "testnet/..."})},
	{pkg: m + "gpu/...", deps: and(above, []string{m + "p2p/...", m + "market/...", m + "jobs/...", m + "chain/...", m + "contracts/...", m + "testnet/...",
		"github.com/libp2p/...", "github.com/ethereum/go-ethereum/...", "github.com/moby/..."})},
	// The compute challenge is pure Go, its workload a static program in
	// a FROM-scratch image: not even gpu's NVML, only internal/ helpers.
	{pkg: m + "gpu/challenge/...", deps: []string{m + "gpu", "github.com/NVIDIA/go-nvml/..."}},
	// Proof of GPU over the network: the challenge between two hosts and
	// the signed records of its verdicts. Above p2p and gpu/challenge,
	// below the market itself (which may rank bids by a provider's
	// status) and the
	// daemon (which hands in the workload that runs a challenge as a
	// job); it never sees NVML, Docker or the chain.
	{pkg: m + "market/proof/...", deps: and(above, []string{m + "market", m + "jobs/...", m + "chain/...", m + "contracts/...", m + "testnet/...", m + "gpu",
		"github.com/ethereum/go-ethereum/...", "github.com/moby/...", "github.com/docker/...", "github.com/NVIDIA/go-nvml/..."})},
	// Receipts of ended deals, their store and protocol, and a
	// requester's view of a provider from them: above p2p, beside
	// market/proof (a record's ID is a string to it), below the market
	// and the daemon (which hands in what the chain paid).
	{pkg: m + "market/receipt/...", deps: and(above, []string{m + "market", m + "market/proof/...", m + "jobs/...", m + "chain/...", m + "contracts/...", m + "testnet/...", m + "gpu/...",
		"github.com/ethereum/go-ethereum/...", "github.com/moby/...", "github.com/docker/...", "github.com/NVIDIA/go-nvml/..."})},
	// market signs deals through a small interface that chain implements
	// and node hands in; it never sees Docker or go-ethereum.
	{pkg: m + "market/...", deps: and(above, []string{m + "jobs/...", m + "chain/...", m + "contracts/...", m + "testnet/...",
		"github.com/ethereum/go-ethereum/...", "github.com/moby/...", "github.com/docker/..."})},
	{pkg: m + "jobs/...", deps: and(above, []string{m + "market/...", m + "chain/...", m + "contracts/...", m + "testnet/...", m + "gpu/...",
		"github.com/ethereum/go-ethereum/...", "github.com/NVIDIA/go-nvml/..."})},
	{pkg: m + "chain/...", deps: and(above, []string{m + "p2p/...", m + "market/...", m + "jobs/...", m + "gpu/...", m + "testnet/...",
		"github.com/libp2p/...", "github.com/moby/...", "github.com/NVIDIA/go-nvml/..."})},
	{pkg: m + "contracts/...", deps: and(above, []string{m + "p2p/...", m + "market/...", m + "jobs/...", m + "gpu/...", m + "chain/...", m + "testnet/...",
		"github.com/libp2p/...", "github.com/moby/..."})},
	{pkg: m + "testnet/...", deps: and(above, []string{m + "p2p/...", m + "market/...", m + "jobs/...", m + "gpu/..."})},
	{pkg: m + "internal/...", deps: and(above, leaves)},
	// The execution of deals is below the wiring and knows nothing of
	// HTTP: node maps its errors to status codes. It reports in the API's
	// types (node/api), which keeps it from naming node itself.
	{pkg: m + "node/lease", deps: []string{m + "node", m + "cmd/...", m + "testnet/..."}, imports: []string{"net/http"}},
	{pkg: m + "node/replica", deps: []string{m + "node", m + "node/lease", m + "cmd/...", m + "testnet/..."}, imports: []string{m + "market", m + "p2p/...", "net/http"}},
	// The API's types and client are what the CLI links against to talk
	// to a daemon: none of the daemon's wiring, only the leaf packages'
	// types, and no daemon dependency of its own.
	{pkg: m + "node/api", deps: []string{m + "node", m + "node/lease", m + "cmd/...", m + "testnet/...", m + "p2p/overlay",
		"github.com/prometheus/client_golang/prometheus/promhttp", "github.com/spf13/cobra", "github.com/vishvananda/netlink"},
		imports: []string{m + "p2p", "github.com/libp2p/...", "github.com/ethereum/go-ethereum/...", "github.com/moby/...", "github.com/ipfs/..."}},
	// The daemon's wiring; the testnet harness reaches its dashboard only
	// through an interface that cmd hands in (Node.SetTestnet).
	{pkg: m + "node", deps: []string{m + "cmd/...", m + "testnet/..."}},
	// The CLI talks to the daemon through node/api and names the leaf
	// packages' types (and starts a testnet or dev chain); it never reaches
	// into a deal's execution, the network or the contracts itself.
	{pkg: m + "cmd/...", imports: []string{m + "node/lease", m + "p2p/...", m + "contracts/...", m + "internal/...",
		"github.com/libp2p/...", "github.com/ethereum/go-ethereum/...", "github.com/moby/...", "github.com/ipfs/..."}},
}

// listedPackage is what `go list -deps -json` says of one package.
type listedPackage struct {
	ImportPath string
	Imports    []string
	Deps       []string
}

// goListDeps lists every package of the module and all they depend on (not
// their tests: a test may import what its package may not).
func goListDeps(t *testing.T) map[string]*listedPackage {
	t.Helper()
	cmd := exec.Command("go", "list", "-deps", "-json=ImportPath,Imports,Deps", "./...")
	cmd.Dir = ".."
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, stderr.Bytes())
	}
	pkgs := map[string]*listedPackage{}
	dec := json.NewDecoder(bytes.NewReader(out))
	for {
		var p listedPackage
		if err := dec.Decode(&p); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatalf("go list output: %v", err)
		}
		pkgs[p.ImportPath] = &p
	}
	return pkgs
}

func matches(pattern, pkg string) bool {
	if tree, ok := strings.CutSuffix(pattern, "/..."); ok {
		return pkg == tree || strings.HasPrefix(pkg, tree+"/")
	}
	return pkg == pattern
}

// importChain is one path of imports from pkg to dep, for the message.
func importChain(pkgs map[string]*listedPackage, pkg, dep string) string {
	prev := map[string]string{pkg: ""}
	queue := []string{pkg}
	for len(queue) > 0 {
		p := queue[0]
		queue = queue[1:]
		if p == dep {
			chain := []string{p}
			for q := prev[p]; q != ""; q = prev[q] {
				chain = append(chain, q)
			}
			slices.Reverse(chain)
			return strings.Join(chain, " → ")
		}
		if lp := pkgs[p]; lp != nil {
			for _, i := range lp.Imports {
				if _, seen := prev[i]; !seen {
					prev[i] = p
					queue = append(queue, i)
				}
			}
		}
	}
	return pkg + " → … → " + dep
}

// checkDeps reports every broken rule, and every rule that names a package
// no longer there (a ban of a renamed package would pass for ever).
func checkDeps(pkgs map[string]*listedPackage, rules []depRule) []string {
	var own []string
	for p := range pkgs {
		if matches(m+"...", p) {
			own = append(own, p)
		}
	}
	slices.Sort(own)
	exists := func(pattern string, in []string) bool {
		return slices.ContainsFunc(in, func(p string) bool { return matches(pattern, p) })
	}
	all := make([]string, 0, len(pkgs))
	for p := range pkgs {
		all = append(all, p)
	}
	var errs []string
	for _, r := range rules {
		if !exists(r.pkg, own) {
			errs = append(errs, "rule for "+r.pkg+": no such package in the module (renamed? update the rule)")
		}
		for _, b := range and(r.deps, r.imports) {
			if !exists(b, all) {
				errs = append(errs, "rule for "+r.pkg+": banned "+b+" is no package the module builds with (renamed? update the rule)")
			}
		}
		for _, p := range own {
			if !matches(r.pkg, p) {
				continue
			}
			for _, b := range r.deps {
				for _, d := range pkgs[p].Deps {
					if matches(b, d) && !matches(b, p) {
						errs = append(errs, p+" depends on "+d+" (banned by "+b+"): "+importChain(pkgs, p, d))
					}
				}
			}
			for _, b := range r.imports {
				for _, d := range pkgs[p].Imports {
					if matches(b, d) {
						errs = append(errs, p+" imports "+d+" (banned by "+b+")")
					}
				}
			}
		}
	}
	for _, p := range own {
		switch path.Base(p) {
		case "util", "utils", "common", "helpers":
			errs = append(errs, p+": no util, common or helpers packages (docs/architecture.md): a helper lives with the code that needs it")
		}
	}
	return errs
}

// TestDeps fails when an arrow of docs/architecture.md's package map points
// the wrong way anywhere in the dependency graph that `go list -deps`
// reports (after tailscale's tstest/deptest), and when a rule names a
// package that is gone.
func TestDeps(t *testing.T) {
	pkgs := goListDeps(t)
	if _, ok := pkgs[m+"node/api"]; !ok {
		t.Fatalf("go list did not list %snode/api: not run from the module?", m)
	}
	for _, e := range checkDeps(pkgs, depRules) {
		t.Error(e)
	}
}

// The checker catches what it is for: a dependency through another
// package, a direct import, a rule for a package that is gone and a ban of
// one that is gone. The graph is made up; TestDeps runs the real one.
func TestCheckDeps(t *testing.T) {
	pkgs := map[string]*listedPackage{
		m + "market":  {ImportPath: m + "market", Imports: []string{m + "p2p"}, Deps: []string{m + "p2p", "net/http"}},
		m + "p2p":     {ImportPath: m + "p2p", Imports: []string{"net/http"}, Deps: []string{"net/http"}},
		m + "x/utils": {ImportPath: m + "x/utils"},
		"net/http":    {ImportPath: "net/http"},
	}
	for _, c := range []struct {
		name string
		rule depRule
		want string // "" for no error
	}{
		{"allowed", depRule{pkg: m + "market", deps: []string{m + "x/..."}}, ""},
		{"gone ban", depRule{pkg: m + "market", deps: []string{"net/http/httptest"}}, "rule for " + m + "market: banned net/http/httptest is no package"},
		{"transitive", depRule{pkg: m + "market", deps: []string{"net/http"}}, m + "market depends on net/http (banned by net/http): " + m + "market → " + m + "p2p → net/http"},
		{"direct", depRule{pkg: m + "p2p", imports: []string{"net/..."}}, m + "p2p imports net/http"},
		{"direct only", depRule{pkg: m + "market", imports: []string{"net/http"}}, ""},
		{"gone package", depRule{pkg: m + "jobs", deps: []string{"net/http"}}, "rule for " + m + "jobs: no such package"},
		{"a tree holds itself", depRule{pkg: m + "p2p/...", deps: []string{m + "p2p/..."}}, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			var got []string
			for _, e := range checkDeps(pkgs, []depRule{c.rule}) {
				if !strings.Contains(e, "no util, common or helpers") {
					got = append(got, e)
				}
			}
			switch {
			case c.want == "" && len(got) > 0:
				t.Fatalf("errors %q, want none", got)
			case c.want != "" && (len(got) != 1 || !strings.HasPrefix(got[0], c.want)):
				t.Fatalf("errors %q, want one starting %q", got, c.want)
			}
		})
	}
	errs := checkDeps(pkgs, nil)
	if len(errs) != 1 || !strings.Contains(errs[0], m+"x/utils: no util") {
		t.Fatalf("errors %q, want the utils package named", errs)
	}
}
