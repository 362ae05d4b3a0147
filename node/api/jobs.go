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

// JobListEntry is one job of GET /v1/jobs: the job, and for a rank of a
// distributed job its rank and the job it belongs to (rank 0's ID).
type JobListEntry struct {
	*jobs.Job
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
