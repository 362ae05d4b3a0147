package main

import (
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aixblock/aixblock/chain"
	"github.com/aixblock/aixblock/jobs/jobstest"
	"github.com/aixblock/aixblock/p2p/p2ptest"
	"github.com/ethereum/go-ethereum/common"
)

type dealOut struct {
	Deal struct {
		ID              string   `json:"deal_id"`
		OfferID         string   `json:"offer_id"`
		Provider        string   `json:"provider"`
		Requester       string   `json:"requester"`
		ProviderWallet  string   `json:"provider_wallet"`
		RequesterWallet string   `json:"requester_wallet"`
		Token           string   `json:"token"`
		Price           string   `json:"price"`
		MaxDurationS    int64    `json:"max_duration_s"`
		GPUs            []string `json:"gpus"`
		GPUClass        string   `json:"gpu_class"`
		SpecHash        string   `json:"spec_hash"`
		RequesterSig    []byte   `json:"requester_sig"`
		ProviderSig     []byte   `json:"provider_sig"`
	} `json:"deal"`
	Stats struct {
		Bids int `json:"bids"`
	} `json:"stats"`
}

// Three daemons on one dev chain: an H100 provider, an A100 provider and a
// requester. The requester finds exactly the H100 provider, agrees a deal
// with it, and both wallet signatures verify.
func TestMarketProvidersAndDeal(t *testing.T) {
	info, file := startDevchain(t)
	net := startChainNet(t, "markettest", info, file,
		chainNode{init: []string{"--gpu-mock", "dgxh100", "--price", "mock-h100-80gb=2"}},
		chainNode{init: []string{"--gpu-mock", "dgxa100", "--price", "mock-a100-40gb=1"}},
		chainNode{})
	repos := net.repos
	var provID idInfo
	runJSON(t, repos[0], &provID, "id")
	requester := repos[2]
	findsTheH100Provider(t, requester, provID.PeerID)
	d := dealWithTheH100Provider(t, requester, provID.PeerID, info)
	var deals []struct {
		ID string `json:"deal_id"`
	}
	runJSON(t, repos[0], &deals, "market", "deals")
	if len(deals) != 1 || deals[0].ID != d.Deal.ID {
		t.Fatalf("provider's deals: %+v", deals)
	}
	marketBadInput(t, requester)
}

// findsTheH100Provider: the requester's market finds only provider among
// the H100 providers, with its GPUs and price, in JSON and in the table.
func findsTheH100Provider(t *testing.T, requester, provider string) {
	t.Helper()
	var found struct {
		Providers []struct {
			PeerID string `json:"peer_id"`
			GPUs   []struct {
				Class string `json:"class"`
				Free  int    `json:"free"`
			} `json:"gpus"`
			Price []struct {
				Units  string `json:"per_gpu_hour_units"`
				Symbol string `json:"symbol"`
			} `json:"price"`
		} `json:"providers"`
	}
	waitProviders(t, requester, 1, "--gpu", "mock-h100-80gb")
	runJSON(t, requester, &found, "market", "providers", "--gpu", "mock-h100-80gb")
	if len(found.Providers) != 1 || found.Providers[0].PeerID != provider {
		t.Fatalf("H100 providers: %+v, want only %s", found.Providers, provider)
	}
	p := found.Providers[0]
	if p.GPUs[0].Free != 8 || p.Price[0].Units != "2" || p.Price[0].Symbol != "tUSD" {
		t.Fatalf("provider %+v", p)
	}
	if out := mustRun(t, requester, "market", "providers", "--gpu", "mock-h100-80gb"); !strings.Contains(out, "mock-h100-80gb 8/8") || !strings.Contains(out, "2 tUSD") {
		t.Fatalf("table:\n%s", out)
	}
}

// dealWithTheH100Provider: an offer from the requester ends in a deal
// with provider on its terms, between the dev chain's accounts 3 and 1,
// signed by both wallets.
func dealWithTheH100Provider(t *testing.T, requester, provider string, info devchainInfo) dealOut {
	t.Helper()
	var d dealOut
	runJSON(t, requester, &d, "market", "offer", "--gpus", "2", "--gpu-class", "mock-h100-80gb", "--max-price", "5", "--duration", "30m")
	if d.Deal.Provider != provider || d.Deal.Price != "2000000" || len(d.Deal.GPUs) != 2 || d.Deal.MaxDurationS != 1800 {
		t.Fatalf("deal %+v", d.Deal)
	}
	price, _ := new(big.Int).SetString(d.Deal.Price, 10)
	cd := chain.Deal{ID: common.HexToHash(d.Deal.ID), OfferID: common.HexToHash(d.Deal.OfferID),
		RequesterWallet: common.HexToAddress(d.Deal.RequesterWallet), ProviderWallet: common.HexToAddress(d.Deal.ProviderWallet),
		Token: common.HexToAddress(d.Deal.Token), Price: price, MaxDurationS: uint64(d.Deal.MaxDurationS),
		GPUs: uint32(len(d.Deal.GPUs)), SpecHash: common.HexToHash(d.Deal.SpecHash)}
	escrow := common.HexToAddress(info.Escrow)
	if !strings.EqualFold(d.Deal.RequesterWallet, info.Accounts[3].Address) || !strings.EqualFold(d.Deal.ProviderWallet, info.Accounts[1].Address) {
		t.Fatalf("deal wallets %s / %s", d.Deal.RequesterWallet, d.Deal.ProviderWallet)
	}
	if err := chain.VerifyDeal(big.NewInt(1337), escrow, cd, d.Deal.RequesterSig, cd.RequesterWallet); err != nil {
		t.Fatalf("requester signature: %v", err)
	}
	if err := chain.VerifyDeal(big.NewInt(1337), escrow, cd, d.Deal.ProviderSig, cd.ProviderWallet); err != nil {
		t.Fatalf("provider signature: %v", err)
	}
	return d
}

// marketBadInput: offers and searches the market cannot meet or read fail
// with what was wrong, as does init with a bad --price.
func marketBadInput(t *testing.T, requester string) {
	t.Helper()
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"market", "offer", "--gpus", "1"}, `"max-price" not set`},
		{[]string{"market", "offer", "--gpus", "1", "--gpu-class", "H100 please", "--max-price", "5"}, "gpu_class"},
		{[]string{"market", "offer", "--gpus", "1", "--max-price", "abc"}, "max_price"},
		{[]string{"market", "offer", "--gpus", "1", "--max-price", "5", "--duration", "forever"}, "duration"},
		{[]string{"market", "offer", "--gpus", "1", "--gpu-class", "mock-h100-80gb", "--max-price", "0.5"}, "no deal"},
		{[]string{"market", "providers", "--gpu", "not a class"}, "gpu class"},
	} {
		r := run(t, requester, tc.args...)
		if r.code == 0 || !strings.Contains(r.stderr, tc.want) {
			t.Errorf("aixblock %v: exit %d, stderr %q; want an error containing %q", tc.args, r.code, r.stderr, tc.want)
		}
	}
	if r := run(t, t.TempDir(), "init", "--price", "mock-h100-80gb"); r.code == 0 || !strings.Contains(r.stderr, "CLASS=AMOUNT") {
		t.Errorf("bad --price: %+v", r)
	}
}

// waitProviders waits until repo's market finds at least n providers
// (market providers with flags, such as --gpu CLASS).
func waitProviders(t testing.TB, repo string, n int, flags ...string) {
	t.Helper()
	p2ptest.WaitFor(t, 30*time.Second, func() bool {
		var found struct {
			Providers []struct{} `json:"providers"`
		}
		runJSON(t, repo, &found, append([]string{"market", "providers"}, flags...)...)
		return len(found.Providers) >= n
	}, "%s sees fewer than %d providers %v", repo, n, flags)
}

// Two daemons, no deal: one challenges the other (proof of GPU). A node
// without GPUs answers mock-cpu through its job path, on its CPU, and
// passes; it advertises no H100 to challenge; and a class no envelope
// knows is no verdict at all. (TestProofOfGPU catches a liar.)
func TestMarketVerify(t *testing.T) {
	jobstest.Docker(t) // the challenge's image
	prov, ver := initRepo(t, "verifytest"), initRepo(t, "verifytest")
	startDaemon(t, prov)
	var id idInfo
	runJSON(t, prov, &id, "id")
	startDaemon(t, ver, "--bootstrap", id.Addrs[0])
	var peers []peerInfo
	p2ptest.WaitFor(t, 15*time.Second, func() bool {
		peers = nil
		runJSON(t, ver, &peers, "peers")
		return hasPeer(peers, id.PeerID)
	}, "verifier did not connect to the provider: it sees %+v", &peers)

	var res struct {
		Passed bool `json:"passed"`
		ID     string
		Record struct {
			Provider string `json:"provider"`
			Class    string `json:"class"`
			N        int    `json:"n"`
			Outcome  string `json:"outcome"`
		} `json:"record"`
	}
	runJSON(t, ver, &res, "market", "verify", id.PeerID, "--class", "mock-cpu")
	if r := res.Record; !res.Passed || res.ID == "" || r.Provider != id.PeerID || r.Class != "mock-cpu" || r.N != 512 || r.Outcome != "pass" {
		t.Fatalf("verify --json: %+v", res)
	}
	for _, tc := range []struct {
		name, class  string
		code         bool // a non-zero exit
		stdout, errs string
	}{
		{"a CPU passes a mock class", "mock-cpu", false, "verified: mock-cpu, 512x512 in ", ""},
		{"a node without an advert has no H100 to challenge", "nvidia-h100-80gb", true, "", "no advert found"},
		{"an unknown class is no verdict", "nvidia-nonesuch", true, "", "claim cannot be checked"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := run(t, ver, "market", "verify", id.PeerID, "--class", tc.class)
			if (r.code != 0) != tc.code || !strings.HasPrefix(r.stdout, tc.stdout) || !strings.Contains(r.stderr, tc.errs) {
				t.Fatalf("exit %d\nstdout: %s\nstderr: %s", r.code, r.stdout, r.stderr)
			}
		})
	}
	for _, repo := range []string{prov, ver} {
		if _, err := os.Stat(filepath.Join(repo, "proof-records.json")); err != nil {
			t.Errorf("no records kept: %v", err)
		}
	}
}
