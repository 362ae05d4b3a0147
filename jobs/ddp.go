package jobs

import (
	"encoding/json"
	"fmt"
	"net"
	"strconv"
)

// Rendezvous is where one rank of a distributed job stands: the launcher
// contract that unmodified torchrun and TensorFlow scripts read.
type Rendezvous struct {
	Nodes        int      // node ranks in all
	ProcsPerNode int      // processes per node; zero means 1
	NodeRank     int      // this node's rank; 0 is the master
	MasterAddr   string   // node rank 0's address
	MasterPort   int      // its rendezvous port
	Workers      []string // every node's HOST:PORT, by node rank (for TF_CONFIG)
	Framework    string   // pytorch, tensorflow or none
}

// Validate checks the rendezvous and names the bad field.
func (r Rendezvous) Validate() error {
	switch {
	case r.Nodes < 1:
		return specErr("distributed.nodes", "%d: want at least 1", r.Nodes)
	case r.NodeRank < 0 || r.NodeRank >= r.Nodes:
		return specErr("node_rank", "%d of %d nodes", r.NodeRank, r.Nodes)
	case r.MasterAddr == "" || r.MasterPort <= 0 || r.MasterPort > 65535:
		return specErr("master", "%s:%d", r.MasterAddr, r.MasterPort)
	case len(r.Workers) != 0 && len(r.Workers) != r.Nodes:
		return specErr("workers", "%d addresses for %d nodes", len(r.Workers), r.Nodes)
	}
	return nil
}

// Env is the contract as environment variables for the container of node
// rank r.NodeRank (its first process: LOCAL_RANK 0; a launcher such as
// torchrun starts the others from PET_*).
func (r Rendezvous) Env() []string {
	procs := max(r.ProcsPerNode, 1)
	env := []string{
		"MASTER_ADDR=" + r.MasterAddr,
		"MASTER_PORT=" + strconv.Itoa(r.MasterPort),
		"WORLD_SIZE=" + strconv.Itoa(r.Nodes*procs),
		"RANK=" + strconv.Itoa(r.NodeRank*procs),
		"NODE_RANK=" + strconv.Itoa(r.NodeRank),
		"LOCAL_RANK=0",
		"LOCAL_WORLD_SIZE=" + strconv.Itoa(procs),
		"PET_NNODES=" + strconv.Itoa(r.Nodes),
		"PET_NPROC_PER_NODE=" + strconv.Itoa(procs),
		"PET_NODE_RANK=" + strconv.Itoa(r.NodeRank),
		"PET_MASTER_ADDR=" + r.MasterAddr,
		"PET_MASTER_PORT=" + strconv.Itoa(r.MasterPort),
	}
	if r.Framework == "tensorflow" || len(r.Workers) > 0 {
		workers := r.Workers
		if len(workers) == 0 {
			workers = []string{net.JoinHostPort(r.MasterAddr, strconv.Itoa(r.MasterPort))}
		}
		tf := map[string]any{
			"cluster": map[string][]string{"worker": workers},
			"task":    map[string]any{"type": "worker", "index": r.NodeRank},
		}
		b, _ := json.Marshal(tf)
		env = append(env, "TF_CONFIG="+string(b))
	}
	return env
}

// String is for logs.
func (r Rendezvous) String() string {
	return fmt.Sprintf("node %d/%d via %s:%d", r.NodeRank, r.Nodes, r.MasterAddr, r.MasterPort)
}
