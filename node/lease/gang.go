package lease

import (
	"crypto/sha256"
	"encoding/hex"
	"time"
)

// Distributed jobs: one deal per node rank, a gang start (every rank funded
// and prepared before any starts), the launcher contract handed to every
// rank, and any rank failing fails all.

const (
	gangStartWindow = 2 * time.Minute
)

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
