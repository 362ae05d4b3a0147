package jobs

import (
	"encoding/json"
	"strings"
	"testing"
)

func envMap(env []string) map[string]string {
	m := map[string]string{}
	for _, e := range env {
		k, v, _ := strings.Cut(e, "=")
		m[k] = v
	}
	return m
}

func TestRendezvousEnv(t *testing.T) {
	r := Rendezvous{Nodes: 3, ProcsPerNode: 2, NodeRank: 1, MasterAddr: "10.0.0.1", MasterPort: 29500,
		Workers: []string{"10.0.0.1:29500", "10.0.0.2:29501", "10.0.0.3:29502"}, Framework: "tensorflow"}
	if err := r.Validate(); err != nil {
		t.Fatal(err)
	}
	m := envMap(r.Env())
	for k, want := range map[string]string{
		"MASTER_ADDR": "10.0.0.1", "MASTER_PORT": "29500", "WORLD_SIZE": "6", "RANK": "2", "NODE_RANK": "1",
		"LOCAL_RANK": "0", "LOCAL_WORLD_SIZE": "2", "PET_NNODES": "3", "PET_NPROC_PER_NODE": "2",
		"PET_NODE_RANK": "1", "PET_MASTER_ADDR": "10.0.0.1", "PET_MASTER_PORT": "29500",
	} {
		if m[k] != want {
			t.Errorf("%s = %q, want %q", k, m[k], want)
		}
	}
	var tf struct {
		Cluster struct{ Worker []string }
		Task    struct {
			Type  string
			Index int
		}
	}
	if err := json.Unmarshal([]byte(m["TF_CONFIG"]), &tf); err != nil {
		t.Fatal(err)
	}
	if len(tf.Cluster.Worker) != 3 || tf.Cluster.Worker[2] != "10.0.0.3:29502" || tf.Task.Type != "worker" || tf.Task.Index != 1 {
		t.Fatalf("TF_CONFIG %s", m["TF_CONFIG"])
	}
	for _, bad := range []Rendezvous{
		{Nodes: 0, MasterAddr: "a", MasterPort: 1},
		{Nodes: 2, NodeRank: 2, MasterAddr: "a", MasterPort: 1},
		{Nodes: 2, MasterAddr: "", MasterPort: 1},
		{Nodes: 2, MasterAddr: "a", MasterPort: 70000},
		{Nodes: 2, MasterAddr: "a", MasterPort: 1, Workers: []string{"x"}},
	} {
		if bad.Validate() == nil {
			t.Errorf("%+v accepted", bad)
		}
	}
}
