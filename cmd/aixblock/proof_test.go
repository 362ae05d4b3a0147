package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aixblock/aixblock/jobs/jobstest"
	"github.com/aixblock/aixblock/p2p/p2ptest"
)

// providerProofs is what `market providers --json` says of each
// provider's proof of GPU.
type providerProofs struct {
	Providers []struct {
		PeerID string `json:"peer_id"`
		Proof  struct {
			State string `json:"state"`
			Text  string `json:"text"`
		} `json:"proof"`
	} `json:"providers"`
}

func (p providerProofs) of(id string) (state, text string) {
	for _, pr := range p.Providers {
		if pr.PeerID == id {
			return pr.Proof.State, pr.Proof.Text
		}
	}
	return "", ""
}

// Proof of GPU between daemons on one dev chain: an honest provider of
// mock A100s (advertised as mock-a100-40gb), a provider that lies (its
// mock H100s advertised as nvidia-h100-80gb, from a build that only
// tests make) and a requester. The requester challenges both as soon as
// it finds them, through each provider's job path: the honest one
// verifies as mock, the liar fails; an offer for verified providers
// refuses the liar with the reason, and a job that requires them runs on
// the honest one.
func TestProofOfGPU(t *testing.T) {
	jobstest.Docker(t) // the challenge's image
	info, file := startDevchain(t)
	net := startChainNet(t, "prooftest", info, file,
		chainNode{init: []string{"--gpu-mock", "dgxa100", "--price", "*=2"}},
		chainNode{init: []string{"--gpu-mock", "dgxh100", "--price", "*=1"}, hostile: true},
		chainNode{})
	honest, liar, req := net.repos[0], net.repos[1], net.repos[2]
	var hid, lid idInfo
	runJSON(t, honest, &hid, "id")
	runJSON(t, liar, &lid, "id")

	var found providerProofs
	p2ptest.WaitFor(t, 90*time.Second, func() bool {
		found = providerProofs{}
		if r := run(t, req, "market", "providers", "--json"); r.code == 0 {
			json.Unmarshal([]byte(r.stdout), &found)
		}
		h, _ := found.of(hid.PeerID)
		l, _ := found.of(lid.PeerID)
		return h == "verified" && l == "failed"
	}, "the requester's view of the providers never showed the honest one verified and the liar failed: %+v", &found)
	if _, why := found.of(lid.PeerID); !strings.Contains(why, "failed: refused the challenge: n=") || !strings.Contains(why, "over the 1024") {
		t.Fatalf("the liar's standing: %q", why)
	}
	// The liar's own status says what verifiers found.
	var st struct {
		Proof string `json:"proof"`
	}
	runJSON(t, liar, &st, "status")
	if !strings.HasPrefix(st.Proof, "failed: refused the challenge") {
		t.Fatalf("the liar's own status: proof %q", st.Proof)
	}
	if out := mustRun(t, req, "market", "providers"); !strings.Contains(out, "PROOF OF GPU") || !strings.Contains(out, "verified by 1, last at ") {
		t.Fatalf("market providers:\n%s", out)
	}

	r := run(t, req, "market", "verify", lid.PeerID, "--class", "nvidia-h100-80gb")
	if r.code == 0 || !strings.HasPrefix(r.stdout, "failed: refused the challenge: n=89344") {
		t.Fatalf("verify the liar: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	r = run(t, req, "market", "offer", "--gpus", "1", "--gpu-class", "nvidia-h100-80gb", "--max-price", "5", "--verified")
	if r.code == 0 || !strings.Contains(r.stderr, "not a verified provider (failed: refused the challenge") {
		t.Fatalf("an offer for verified providers only, the liar the one provider of its class: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	verifiedJobRuns(t, req, hid.PeerID)
	aSpecRequiresIt(t, req)
}

// verifiedJobRuns: `job run --verified` deals with the verified provider.
func verifiedJobRuns(t *testing.T, req, provider string) {
	t.Helper()
	r := run(t, req, "job", "run", "--gpus", "1", "--gpu-class", "mock-a100-40gb", "--max-price", "5", "--verified",
		jobstest.Image, "--", "echo", "verified")
	out := r.stdout + r.stderr
	id := ""
	for _, l := range strings.Split(out, "\n") {
		if f := strings.Fields(l); len(f) == 2 && f[0] == "job" {
			id = f[1]
		}
	}
	var st struct {
		State    string `json:"state"`
		Provider string `json:"provider"`
	}
	runJSON(t, req, &st, "job", "status", id)
	if r.code != 0 || !strings.Contains(out, "verified") || st.State != "completed" || st.Provider != provider {
		t.Fatalf("job run --verified: %+v, want completed on the honest provider %s\n%s", st, provider, out)
	}
}

// aSpecRequiresIt: a spec's require: {verified: true} is refused where no
// provider of the class stands verified, with the reason in the job's.
func aSpecRequiresIt(t *testing.T, req string) {
	t.Helper()
	spec := filepath.Join(t.TempDir(), "job.yaml")
	os.WriteFile(spec, []byte("image: "+jobstest.Image+"\nargs: [echo, hi]\nresources: {gpus: 1, gpu_class: nvidia-h100-80gb}\n"+
		"max_price: \"5\"\nrequire: {verified: true}\ntimeouts: {queue: 2s}\n"), 0o600)
	id := strings.TrimSpace(mustRun(t, req, "job", "submit", spec))
	var st struct {
		State  string `json:"state"`
		Reason string `json:"reason"`
	}
	p2ptest.WaitFor(t, 60*time.Second, func() bool {
		runJSON(t, req, &st, "job", "status", id)
		return st.State == "failed"
	}, "job %s requiring verified providers never failed: %+v", id, &st)
	if !strings.Contains(st.Reason, "not a verified provider (failed: refused the challenge") {
		t.Fatalf("job %s failed for %q", id, st.Reason)
	}
}
