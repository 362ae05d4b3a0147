package node

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"path/filepath"

	"github.com/aixblock/aixblock/market/proof"
	"github.com/aixblock/aixblock/node/api"
	"github.com/libp2p/go-libp2p/core/peer"
)

// ProofRecordsFile is where the daemon keeps proof-of-GPU records, in the
// repo: those it made as a verifier and those verifiers sent about it.
const ProofRecordsFile = "proof-records.json"

// maxCPUChallengeN bounds what a free challenge costs this daemon's CPU:
// the mock classes' n is 512, and an n of 1024 is under a second of one
// core, at most 12 times an hour (proof.Limits).
const maxCPUChallengeN = 1024

// openProof serves the proof-of-GPU challenge on the node's host, with
// the in-process CPU workload for now, and holds a verifier signing with
// the node's key; both keep their records in one store.
func (n *Node) openProof(log *slog.Logger) error {
	network := n.p2p.Network()
	store, err := proof.OpenStore(proof.StoreConfig{Path: filepath.Join(n.repo.Dir, ProofRecordsFile),
		Network: network, Self: n.p2p.Host.ID(), Log: log})
	if err != nil {
		return fmt.Errorf("proof store: %w", err)
	}
	if n.proofVerifier, err = proof.NewVerifier(n.p2p.Host, network, proof.VerifierConfig{
		Key: n.repo.Identity, Store: store, Log: log}); err != nil {
		return fmt.Errorf("proof verifier: %w", err)
	}
	if n.proofProvider, err = proof.NewProvider(n.p2p.Host, network, proof.ProviderConfig{
		Workload: proof.CPU{MaxN: maxCPUChallengeN}, Store: store, Log: log}); err != nil {
		return fmt.Errorf("proof provider: %w", err)
	}
	return nil
}

// closeProof stops serving challenges. The verifier holds nothing to
// release: a challenge under way ends with its API request.
func (n *Node) closeProof() error {
	if n.proofProvider == nil {
		return nil
	}
	if err := n.proofProvider.Close(); err != nil {
		return fmt.Errorf("close proof provider: %w", err)
	}
	return nil
}

// handleVerify is POST /v1/market/verify: challenge a peer on its claim.
// A verdict, pass or fail, is 200 with the signed record; what is no
// verdict (a claim that cannot be checked, an unreachable or busy peer)
// is an error status with the reason.
func (n *Node) handleVerify(w http.ResponseWriter, r *http.Request) {
	var req api.VerifyRequest
	if !readJSON(w, r, &req) {
		return
	}
	pid, claim, err := verifyClaim(req)
	if err != nil {
		writeJSON(w, http.StatusBadRequest, apiError(err.Error()))
		return
	}
	rec, err := n.proofVerifier.Verify(r.Context(), pid, claim)
	if err != nil && rec.Verifier == "" { // no record: no verdict
		writeJSON(w, verifyErrorStatus(err), apiError(err.Error()))
		return
	}
	res := api.VerifyResult{Record: rec, ID: rec.ID(), Passed: rec.Passed()}
	if err != nil {
		res.Error = err.Error()
	}
	writeJSON(w, http.StatusOK, res)
}

// verifyClaim reads a verify request. Adverts carry no GPU UUIDs yet, so
// the GPUs challenged are named by index ("gpu-0", ...): the CPU
// workload runs on whatever is named.
func verifyClaim(req api.VerifyRequest) (peer.ID, proof.Claim, error) {
	pid, err := peer.Decode(req.Peer)
	if err != nil {
		return "", proof.Claim{}, fmt.Errorf("peer: %q is not a peer ID: %w", req.Peer, err)
	}
	if req.Class == "" {
		return "", proof.Claim{}, errors.New("class: required (e.g. mock-cpu, nvidia-h100-80gb)")
	}
	if req.GPUs < 0 || req.N < 0 {
		return "", proof.Claim{}, fmt.Errorf("gpus %d, n %d: must not be negative", req.GPUs, req.N)
	}
	gpus := make([]string, max(req.GPUs, 1))
	for i := range gpus {
		gpus[i] = fmt.Sprintf("gpu-%d", i)
	}
	return pid, proof.Claim{Class: req.Class, GPUs: gpus, N: req.N}, nil
}

// verifyErrorStatus maps an error that is no verdict to its status: the
// caller's claim is a bad request, a refusal for later is 429, anything
// else (unreachable, the request ending) is the peer's side: 502.
func verifyErrorStatus(err error) int {
	switch {
	case errors.Is(err, proof.ErrClaim):
		return http.StatusBadRequest
	case errors.Is(err, proof.ErrRateLimited), errors.Is(err, proof.ErrBusy):
		return http.StatusTooManyRequests
	}
	return http.StatusBadGateway
}
