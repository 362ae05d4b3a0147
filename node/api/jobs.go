package api

import (
	"time"

	"github.com/aixblock/aixblock/jobs"
)

// SubmitRequest is POST /v1/jobs: a spec as YAML (as in a spec file) or as
// JSON, run on this node when Local is set.
type SubmitRequest struct {
	SpecYAML string     `json:"spec_yaml,omitempty"`
	Spec     *jobs.Spec `json:"spec,omitempty"`
	Local    bool       `json:"local"`
	// Prepay, for a market job, is how far its vouchers may run ahead of
	// its run (e.g. "2h" for a long job from a laptop that may sleep);
	// empty means the daemon's market.prepay.
	Prepay string `json:"prepay,omitempty"`
}

// Job is a job as the API shows it (GET /v1/jobs/ID, what `job status
// --json` prints): the record of the node that runs it (jobs.Job) and, for
// a job this node runs elsewhere through the market, what its lease adds.
// Its State is a jobs.State, or JobQueued or JobUnknown for a market job.
//
// The embedded record keeps the JSON flat: one object, jobs.Job's keys
// followed by these. The same type carries a provider's answer about a
// job to its requester (node/lease), which keeps it in its records.
type Job struct {
	jobs.Job
	// Provider is the peer running the job, on the requester's side of a
	// market job.
	Provider string `json:"provider,omitempty"`
	// ProviderWallet is the wallet its deal pays, and ProviderIP the
	// provider's public IP as this node reaches it (empty when it is
	// loopback, private or unknown), on the requester's side of a market
	// job: what keeps a replicated job's runs on distinct owners.
	ProviderWallet string `json:"provider_wallet,omitempty"`
	ProviderIP     string `json:"provider_ip,omitempty"`
	// Network is a distributed rank's job network as its provider sees
	// it (filled in by the provider's daemon when it answers).
	Network *JobNetwork `json:"network,omitempty"`
	// GangStartMs is how long the gang start of a distributed job took
	// (every rank prepared, then told to go), on rank 0's requester side.
	GangStartMs int64 `json:"gang_start_ms,omitempty"`
	// Placement is how a distributed job's providers were chosen: where
	// they reach each other directly, and the round trips measured
	// (rank 0's, on the requester's side).
	Placement *Placement `json:"placement,omitempty"`
	// Verification is how the runs of a checked job came out: on the
	// replicated job, on each of its runs, and on a sampled job.
	Verification *Verification `json:"verification,omitempty"`
	// Events are an elastic distributed job's membership changes, on its
	// requester's side (rank 0's): a rank lost, a replacement joined, a
	// restart from a checkpoint, or why the job could not go on.
	Events []JobEvent `json:"events,omitempty"`
}

// JobEvent is one membership change of an elastic job, by the
// requester's clock.
type JobEvent struct {
	At         time.Time `json:"at"`
	Generation int       `json:"generation"`
	Ranks      int       `json:"ranks"` // the ranks it goes on with (0: it ended)
	Text       string    `json:"text"`
}

// The states only a requester's market jobs have; jobs.State.Terminal
// is false for both.
const (
	// JobQueued: a market job waiting for a provider to bid (up to
	// timeouts.queue); its reason says why none has.
	JobQueued jobs.State = "queued"
	// JobUnknown: a market job whose provider stopped answering; it fails
	// after a grace window.
	JobUnknown jobs.State = "unknown"
)

// JobNetwork is a rank's place on its job's private network.
type JobNetwork struct {
	Addr    string           `json:"addr"`
	Peers   []JobNetworkPeer `json:"peers,omitempty"`
	Dropped uint64           `json:"dropped_packets,omitempty"`
}

// JobNetworkPeer is another rank's provider as one rank's provider
// reaches it: "direct" or "relayed", and the bytes carried each way.
type JobNetworkPeer struct {
	Rank    int    `json:"rank"`
	Peer    string `json:"peer"`
	Path    string `json:"path,omitempty"`
	TxBytes uint64 `json:"tx_bytes"`
	RxBytes uint64 `json:"rx_bytes"`
}

// JobListEntry is one job of GET /v1/jobs: the job, and for a rank of a
// distributed job its rank and the job it belongs to (rank 0's ID).
type JobListEntry struct {
	*Job
	Rank    *int   `json:"rank,omitempty"`
	GroupOf string `json:"group_of,omitempty"`
}

// ForwardRequest is POST /v1/jobs/{id}/forward: publish the job's Port on
// Listen ([HOST:]PORT of this machine; the host defaults to 127.0.0.1).
type ForwardRequest struct {
	Port   int    `json:"port"`
	Listen string `json:"listen"`
}

// ForwardInfo is one forward of a service job's port to the requester's
// machine (GET /v1/jobs/{id}/forwards, /v1/forwards).
type ForwardInfo struct {
	JobID string `json:"job_id"`
	Port  int    `json:"port"`
	Local string `json:"local"` // the address it listens on here
	// Accepted and Open count its connections; LastError is the last
	// connection that could not be carried, and why.
	Accepted  int       `json:"accepted"`
	Open      int       `json:"open"`
	Failed    int       `json:"failed"`
	LastError string    `json:"last_error,omitempty"`
	Since     time.Time `json:"since"`
}

// Money figures come in base units (exact) and in token units (what a
// person reads), with the token's symbol.

// JobRank is one rank of a distributed market job, or the one deal of a
// single one.
type JobRank struct {
	Rank     int    `json:"rank"`
	JobID    string `json:"job_id"`
	Provider string `json:"provider"`
	State    string `json:"state"`
	// Price is per GPU-hour; Cost is what the rank has cost so far.
	Price      string `json:"price"`
	PriceUnits string `json:"price_units"`
	GPUs       int    `json:"gpus"`
	Cost       string `json:"cost"`
	CostUnits  string `json:"cost_units"`
	// Holdback is the share of the pay held back until the result
	// verifies, and where it stands: "20% held", "20% paid" or "20%
	// withheld" (the result was outvoted); empty: none.
	Holdback string `json:"holdback,omitempty"`
}

// JobCost is GET /v1/jobs/{id}/cost: what a job through the market costs
// its requester, every rank's deal together.
type JobCost struct {
	JobID    string `json:"job_id"`
	Symbol   string `json:"symbol"`
	Decimals uint8  `json:"decimals"`
	// Cost is the run time so far at the deals' prices; Paid is what the
	// requester has vouched for it; MaxCost is the deals' ceiling.
	Cost         string    `json:"cost"`
	CostUnits    string    `json:"cost_units"`
	Paid         string    `json:"paid"`
	PaidUnits    string    `json:"paid_units"`
	MaxCost      string    `json:"max_cost"`
	MaxCostUnits string    `json:"max_cost_units"`
	Ranks        []JobRank `json:"ranks"`
}

// Spend is one market job in GET /v1/wallet/spending.
type Spend struct {
	Name      string    `json:"name,omitempty"`
	CreatedAt time.Time `json:"created_at"`
	State     string    `json:"state"`
	Providers int       `json:"providers"`
	JobCost
}

// SpendingInfo is GET /v1/wallet/spending: what this node's market jobs
// cost, newest first, a distributed job once (under rank 0).
type SpendingInfo struct {
	Jobs []Spend `json:"jobs"`
}

// Verification is how a checked market job's runs came out (a spec's
// verify: replicas, or a spot check drawn by sample).
type Verification struct {
	// JobID is the checked job: the replicated job, or the sampled one.
	JobID string `json:"job_id"`
	Mode  string `json:"mode"` // replicas or sample
	// State is running, completed (a majority agreed) or failed; Reason
	// says how the runs came out.
	State   jobs.State `json:"state"`
	Reason  string     `json:"reason,omitempty"`
	Checked bool       `json:"checked"`
	Runs    []CheckRun `json:"runs"`
	// Comparisons are the runs of the spec's comparator, with their cost.
	Comparisons []Comparison `json:"comparisons,omitempty"`
}

// Comparison is one run of a checked job's comparator on two results.
type Comparison struct {
	A          string `json:"a"`
	B          string `json:"b"`
	Equivalent bool   `json:"equivalent"`
	Error      string `json:"error,omitempty"`
	// WallMs is what it cost: both results fetched and the comparator's
	// container run, on the requester's node.
	WallMs int64 `json:"wall_ms"`
}

// CheckRun is one run of a checked job.
type CheckRun struct {
	JobID     string     `json:"job_id"`
	Role      string     `json:"role"`
	Provider  string     `json:"provider,omitempty"`
	State     jobs.State `json:"state"`
	ResultCID string     `json:"result_cid,omitempty"`
	// Outcome is pending, agreed, outvoted, failed or unchecked.
	Outcome string `json:"outcome"`
	// Holdback is the run's held-back pay and where it stands (JobRank's).
	Holdback string `json:"holdback,omitempty"`
	// Wallet and IP are its provider's payee wallet and public IP.
	Wallet string `json:"wallet,omitempty"`
	IP     string `json:"ip,omitempty"`
}

// PairReach is how two providers of a distributed job reach each other:
// "direct", "relayed" or "unreachable", and the round trip measured.
type PairReach struct {
	A     string  `json:"a"`
	B     string  `json:"b"`
	Path  string  `json:"path"`
	RTTMs float64 `json:"rtt_ms,omitempty"`
}

// Placement is how a distributed job's providers were chosen: every pair
// of bidders measured, and whether the awarded set reaches each other
// directly.
type Placement struct {
	Direct bool        `json:"direct"`
	Note   string      `json:"note"`
	Pairs  []PairReach `json:"pairs,omitempty"`
}
