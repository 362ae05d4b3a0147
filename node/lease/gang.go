package lease

import (
	"crypto/sha256"
	"encoding/hex"
	"time"

	"github.com/aixblock/aixblock/market"
	"github.com/aixblock/aixblock/node/api"
)

// Distributed jobs: one deal per node rank, a gang start (every rank funded
// and prepared before any starts), the launcher contract handed to every
// rank, and any rank failing fails all.

const (
	gangStartWindow = 2 * time.Minute
)

type prepareRequest struct {
	startRequest
	NodeRank int `json:"node_rank"`
	// Group is rank 0's job ID and Deals every rank's deal, by rank: the
	// providers of those deals, and only they, make up the job's network.
	// Absent for ranks on their hosts' networks.
	Group string        `json:"group,omitempty"`
	Deals []market.Deal `json:"deals,omitempty"`
}

type prepareReply struct {
	Job api.Job `json:"job"`
	// Host and Port are where a rank on its host's network listens.
	Host string `json:"host,omitempty"`
	Port int    `json:"port,omitempty"`
	// Paths is how this provider reaches each other rank's (by rank):
	// direct or relayed; on the job's network only.
	Paths map[int]string `json:"paths,omitempty"`
}

// netRank is a provided rank's job network and rank.
type netRank struct {
	id   string
	rank int
}

// defaultMasterPort is where rank 0 listens on a job network (its own
// namespace: no port of the provider's is taken).
const defaultMasterPort = 29500

// reachWait is how long the prepare gives hole punching to turn a relayed
// path into a direct one.
const reachWait = 5 * time.Second

// netID names a job's network on its providers: the requester's peer ID
// and rank 0's job ID, hashed, so no requester can name another's.
func netID(requester, group string) string {
	h := sha256.Sum256([]byte("aixblock-jobnet/1\x00" + requester + "\x00" + group))
	return hex.EncodeToString(h[:16])
}

type goRequest struct {
	ID  string   `json:"id"`
	Env []string `json:"env"`
}
