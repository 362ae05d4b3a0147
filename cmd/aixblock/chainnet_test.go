package main

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// chainNode is one daemon of a test network on a dev chain.
type chainNode struct {
	init   []string             // init's flags beyond the network, the chain and the key: a provider's --gpu-mock and --price
	config func(map[string]any) // edits its config.json before it starts, when set
	flags  []string             // the daemon's flags, before --bootstrap
	// hostile runs the node from hostileBin: a provider that lies about
	// its GPUs.
	hostile bool
}

// chainNet is a test network's daemons on one dev chain.
type chainNet struct {
	repos   []string
	daemons []*daemon
	flags   [][]string // each daemon's flags, to start it again
}

// startChainNet inits a repo on network for each node, paying on the dev
// chain of info and file with a dev account's wallet (node i has account
// i+1), and starts their daemons one by one, the first being the others'
// bootstrap node.
func startChainNet(t testing.TB, network string, info devchainInfo, file string, nodes ...chainNode) *chainNet {
	t.Helper()
	n := &chainNet{}
	var boot string
	for i, c := range nodes {
		key := filepath.Join(t.TempDir(), "key")
		os.WriteFile(key, []byte(info.Accounts[i+1].PrivateKey), 0o600)
		repo := filepath.Join(t.TempDir(), "repo")
		if c.hostile {
			repoBin.Store(repo, hostileBin(t))
		}
		mustRun(t, repo, append([]string{"init", "--network", network, "--devchain", file, "--wallet-key", key}, c.init...)...)
		if c.config != nil {
			setConfig(t, repo, c.config)
		}
		flags := slices.Clone(c.flags)
		if boot != "" {
			flags = append(flags, "--bootstrap", boot)
		}
		n.repos = append(n.repos, repo)
		n.flags = append(n.flags, flags)
		n.daemons = append(n.daemons, startDaemon(t, repo, flags...))
		if i == 0 {
			var id idInfo
			runJSON(t, repo, &id, "id")
			boot = id.Addrs[0]
		}
	}
	return n
}
