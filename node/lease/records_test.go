package lease

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/aixblock/aixblock/node/api"
)

// A record written when jobs.Job carried the lease's fields loads with
// them: the provider, the rank's job network, the gang start, and a
// requester's own states.
func TestRecordFromOlderDaemonLoads(t *testing.T) {
	const id = "0123456789abcdef"
	old := `{"id":"` + id + `","provider":"P","deal":{},"vouched":"5","settled":false,"last_seen":"2027-01-15T08:00:00Z","spec":{"image":"x"},
  "last":{"id":"` + id + `","spec":{"image":"x"},"state":"unknown","reason":"provider P not answering","created_at":"2027-01-15T08:00:00Z",
    "history":[{"state":"running","at":"2027-01-15T08:00:00Z"}],"provider":"P",
    "network":{"addr":"10.99.0.1","peers":[{"rank":1,"peer":"Q","path":"relayed","tx_bytes":1,"rx_bytes":2}],"dropped_packets":3},
    "gang_start_ms":7},
  "gang_start_ms":7}`
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "remote"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "remote", id+".json"), []byte(old), 0o600); err != nil {
		t.Fatal(err)
	}
	rj := testRequester(t, Config{Dir: dir}).records[id]
	if rj == nil || rj.Last == nil {
		t.Fatalf("the record did not load: %+v", rj)
	}
	j := rj.Last
	if j.State != api.JobUnknown || j.Provider != "P" || j.GangStartMs != 7 || j.Network == nil ||
		j.Network.Dropped != 3 || len(j.Network.Peers) != 1 || j.Network.Peers[0].Path != "relayed" || j.Network.Peers[0].RxBytes != 2 {
		t.Fatalf("the record's job loaded as %+v (network %+v)", j, j.Network)
	}
}
