package api

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/aixblock/aixblock/jobs"
)

// oldJobKeys are the keys of a job's JSON, in order, from when jobs.Job
// itself carried the lease's fields: the view must write the same.
// oldJobKeys are the keys a job had before the lease's fields left
// jobs.Job, then those added since (checkpoint_cid, checkpoint_at,
// generation, regroup, keep_outputs, provider_wallet, provider_ip,
// placement, verification, events).
const oldJobKeys = "id spec state reason exit_code result_cid container_id net_holder gpus created_at started_at " +
	"finished_at history progress ready restarts paused_at paused_ms checkpoint_cid checkpoint_at generation regroup keep_outputs " +
	"provider provider_wallet provider_ip network gang_start_ms placement verification events"

// fullJob is a view with every field set.
func fullJob() *Job {
	now := time.Unix(1_800_000_000, 0).UTC()
	code := 3
	return &Job{
		Job: jobs.Job{ID: "0123456789abcdef", Spec: jobs.Spec{Image: "busybox"}, State: jobs.Failed, Reason: "exited",
			ExitCode: &code, ResultCID: "bafy", ContainerID: "c0", NetHolder: "h0", GPUs: []string{"GPU-0"},
			CreatedAt: now, StartedAt: &now, FinishedAt: &now,
			History:  []jobs.Transition{{State: jobs.Failed, Reason: "exited", At: now}},
			Progress: "input 1/1", Ready: true, Restarts: 1, PausedAt: &now, PausedMs: 5, KeepOutputs: true,
			CheckpointCID: "bafyck", CheckpointAt: &now, Generation: 2, Regroup: "exited with code 1"},
		Provider: "12D3KooWprov", ProviderWallet: "0xwallet", ProviderIP: "192.0.2.1",
		Network: &JobNetwork{Addr: "10.99.0.1", Dropped: 2,
			Peers: []JobNetworkPeer{{Rank: 1, Peer: "12D3KooWother", Path: "direct", TxBytes: 10, RxBytes: 20}}},
		GangStartMs: 1500,
		Placement:   &Placement{Direct: true, Note: "direct", Pairs: []PairReach{{A: "a", B: "b", Path: "direct", RTTMs: 1}}},
		Events:      []JobEvent{{At: now, Generation: 1, Ranks: 2, Text: "rank 2 lost"}},
		Verification: &Verification{JobID: "fedcba9876543210", Mode: "replicas", State: jobs.Completed,
			Runs: []CheckRun{{JobID: "0123456789abcdef", Role: "replica", Outcome: "agreed"}}},
	}
}

// A job's JSON is one flat object with the keys it had before the lease's
// fields left jobs.Job, in the same order, so the CLI's and the
// dashboard's readers and a provider's answers are unchanged.
func TestJobWire(t *testing.T) {
	j := fullJob()
	requireAllSet(t, reflect.ValueOf(*j), "Job")
	rank := 1
	for _, c := range []struct {
		name string
		v    any
		keys string
	}{
		{"job", j, oldJobKeys},
		{"list entry", JobListEntry{Job: j, Rank: &rank, GroupOf: "fedcba9876543210"}, oldJobKeys + " rank group_of"},
		{"network", j.Network, "addr peers dropped_packets"},
		{"network peer", j.Network.Peers[0], "rank peer path tx_bytes rx_bytes"},
	} {
		t.Run(c.name, func(t *testing.T) {
			b, err := json.Marshal(c.v)
			if err != nil {
				t.Fatal(err)
			}
			if got := strings.Join(objectKeys(t, b), " "); got != c.keys {
				t.Fatalf("keys\n%s\nwant\n%s", got, c.keys)
			}
		})
	}
}

// A job as an older daemon wrote it (a provider's answer, a requester's
// record) decodes into the view field for field.
func TestJobWireDecodesOld(t *testing.T) {
	want := fullJob()
	b, err := json.Marshal(want)
	if err != nil {
		t.Fatal(err)
	}
	dec := json.NewDecoder(strings.NewReader(string(b)))
	dec.DisallowUnknownFields()
	var got Job
	if err := dec.Decode(&got); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(&got, want) {
		t.Fatalf("decoded %+v\nwant    %+v", got, *want)
	}
	old := `{"id":"0123456789abcdef","spec":{"image":"x"},"state":"unknown","created_at":"2027-01-15T08:00:00Z","history":null,` +
		`"provider":"P","network":{"addr":"10.99.0.2","peers":[{"rank":0,"peer":"Q","tx_bytes":1,"rx_bytes":2}]},"gang_start_ms":7}`
	got = Job{}
	if err := json.Unmarshal([]byte(old), &got); err != nil {
		t.Fatal(err)
	}
	if got.State != JobUnknown || got.Provider != "P" || got.Network == nil || got.Network.Peers[0].RxBytes != 2 || got.GangStartMs != 7 {
		t.Fatalf("an old record decoded as %+v", got)
	}
}

// objectKeys are the keys of the JSON object b, in order.
func objectKeys(t *testing.T, b []byte) []string {
	t.Helper()
	dec := json.NewDecoder(strings.NewReader(string(b)))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		t.Fatalf("not an object: %s", b)
	}
	var keys []string
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			t.Fatal(err)
		}
		keys = append(keys, tok.(string))
		var skip json.RawMessage
		if err := dec.Decode(&skip); err != nil {
			t.Fatal(err)
		}
	}
	return keys
}

// requireAllSet fails for a zero field of the struct v, embedded structs'
// fields included: a field added later must be set here, and its key
// added to the list above.
func requireAllSet(t *testing.T, v reflect.Value, path string) {
	t.Helper()
	for i := range v.NumField() {
		f, name := v.Field(i), path+"."+v.Type().Field(i).Name
		if !v.Type().Field(i).IsExported() {
			continue // never on the wire
		}
		if v.Type().Field(i).Anonymous && f.Kind() == reflect.Struct {
			requireAllSet(t, f, name)
			continue
		}
		if f.IsZero() {
			t.Errorf("%s is not set: set it and add its key", name)
		}
	}
}
