package lease

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aixblock/aixblock/jobs"
	"github.com/aixblock/aixblock/market"
	"github.com/aixblock/aixblock/node/api"
	"github.com/aixblock/aixblock/p2p"
	"github.com/libp2p/go-libp2p/core/peer"
	mocknet "github.com/libp2p/go-libp2p/p2p/net/mock"
)

// Fuzz targets for every message of the job protocol (protocol.go) that
// a stranger can send: what the provider's handlers decode from a
// requester, and what the requester decodes from a provider. Each feeds
// arbitrary bytes to the same decoding and checks as the real path (or
// the real path itself, over a mocknet), checks it never panics, and that
// what it accepts keeps the rule the checks are there for.

// exampleSpecs are the specs of jobs/examples, for seeds.
func exampleSpecs(f *testing.F) []jobs.Spec {
	f.Helper()
	files, _ := filepath.Glob("../../jobs/examples/*.yaml")
	if len(files) == 0 {
		f.Fatal("no example specs in jobs/examples")
	}
	var out []jobs.Spec
	for _, p := range files {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		s, err := jobs.ParseSpec(b)
		if err != nil {
			f.Fatalf("%s: %v", p, err)
		}
		out = append(out, *s)
	}
	return out
}

// mustJobID fails unless id is what checkJobID promises: 16 lowercase
// hex digits, so that it can name a file.
func mustJobID(t *testing.T, what, id string) {
	t.Helper()
	if len(id) != 16 {
		t.Fatalf("%s %q accepted: %d characters, want 16", what, id, len(id))
	}
	for _, c := range []byte(id) {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			t.Fatalf("%s %q accepted: %q is not a lowercase hex digit", what, id, c)
		}
	}
}

// fuzzDeal is a deal's terms for specWithinTerms: one GPU for an hour,
// at 1 base unit a second.
var fuzzDeal = market.Deal{DealTerms: market.DealTerms{ID: "deal-1", Price: "3600", MaxDurationS: 3600, GPUs: []string{"GPU-0"}, GPUClass: "nvidia-h100-80gb"}}

// checkStartRequest runs what checkStart runs on a start request before
// it looks anything up: the job ID (it names a directory), the spec's
// hash and validation, and the deal's terms.
func checkStartRequest(t *testing.T, sr startRequest) {
	t.Helper()
	if sr.JobID != "" && checkJobID(sr.JobID) == nil {
		mustJobID(t, "job_id", sr.JobID)
	}
	// The deal binds the hash of the requester's spec, which it sent as
	// JSON: the provider's hash of what it decodes from that JSON must be
	// the same, or an honest start is refused.
	if h, err := sr.Spec.Hash(); err == nil {
		b, err := json.Marshal(sr)
		if err != nil {
			t.Fatalf("a decoded start request does not encode: %v", err)
		}
		var again startRequest
		if err := json.Unmarshal(b, &again); err != nil {
			t.Fatalf("a start request's own JSON does not decode: %v\n%s", err, b)
		}
		if h2, err := again.Spec.Hash(); err != nil || h2 != h {
			t.Fatalf("the spec's hash changes over the wire: %s, then %s (%v)\n%s", h, h2, err, b)
		}
	}
	spec := sr.Spec
	if spec.Validate() != nil {
		return
	}
	_ = specWithinTerms(&fuzzDeal, market.Requirements{GPUMemoryMiB: 80 << 10, CPUCores: 8, MemoryMiB: 64 << 10, DiskMiB: 100 << 10}, &spec)
}

// FuzzStartRequest: jobs/start/1's request, as handleJobStart decodes it
// and checkStart checks it first.
func FuzzStartRequest(f *testing.F) {
	for _, s := range exampleSpecs(f) {
		b, _ := json.Marshal(startRequest{DealID: "deal-1", Spec: s, JobID: "0123456789abcdef"})
		f.Add(b)
	}
	f.Add([]byte(`{"deal_id":"deal-1","spec":{"image":"scratch"}}`))
	f.Add([]byte(`{"deal_id":"deal-1","job_id":"../config","spec":{"image":"scratch"}}`))
	f.Add([]byte(`{"deal_id":"deal-1","job_id":"0123456789ABCDEF","spec":{"image":"scratch"}}`))
	f.Add([]byte(`{"deal_id":"deal-1","job_id":"0123456789abcdef0","spec":{"image":"scratch"}}`))
	f.Add([]byte(`{"spec":{"image":"a","resources":{"cpu":1e308,"gpus":-1,"memory_mib":18446744073709551615}}}`))
	f.Add([]byte(`{"spec":{"image":"a","timeouts":{"execution":"9999999999h","queue":"-1s"}}}`))
	f.Add([]byte(`{"spec":{"image":"a","env":{"":"x","A\u0000":"y"},"inputs":[{"cid":"x","path":"../../etc"}]}}`))
	f.Add([]byte(`{"spec":{"image":"a","distributed":{"nodes":2,"framework":"pytorch"}}}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) > wireStart.limits.MaxRequest {
			return // p2p.Handle refuses it before the handler
		}
		var sr startRequest
		if json.Unmarshal(b, &sr) != nil {
			return
		}
		checkStartRequest(t, sr)
	})
}

// FuzzPrepareRequest: jobs/prepare/1's request (a gang rank's start), as
// handleJobPrepare decodes it; its start request is checked as a single
// job's.
func FuzzPrepareRequest(f *testing.F) {
	for _, s := range exampleSpecs(f) {
		b, _ := json.Marshal(prepareRequest{startRequest: startRequest{DealID: "deal-1", Spec: s, JobID: "0123456789abcdef"}, NodeRank: 1})
		f.Add(b)
	}
	f.Add([]byte(`{"deal_id":"deal-1","job_id":"../x","node_rank":-1,"spec":{"image":"a"}}`))
	f.Add([]byte(`{"deal_id":"deal-1","node_rank":9223372036854775807,"spec":{"image":"a","distributed":{"nodes":2}}}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) > wirePrepare.limits.MaxRequest {
			return
		}
		var pr prepareRequest
		if json.Unmarshal(b, &pr) != nil {
			return
		}
		checkStartRequest(t, pr.startRequest)
	})
}

// FuzzJobIDRequest: the request of jobs/status/1, jobs/logs/1 and
// jobs/cancel/1, as providedJob decodes it. The ID only looks up a
// provided job; it never names a file unchecked.
func FuzzJobIDRequest(f *testing.F) {
	f.Add([]byte(`{"id":"0123456789abcdef"}`))
	f.Add([]byte(`{"id":"0123456789abcdef","offset":262144}`))
	f.Add([]byte(`{"id":"0123456789abcdef","reason":"another rank failed"}`))
	f.Add([]byte(`{"id":"../../etc/passwd","offset":-1}`))
	f.Add([]byte(`{"id":"0123456789abcdef","offset":9223372036854775807}`))
	f.Add([]byte(`{"id":1}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) > wireStatus.limits.MaxRequest {
			return
		}
		var r jobIDRequest
		if json.Unmarshal(b, &r) != nil {
			return
		}
		if checkJobID(r.ID) == nil {
			mustJobID(t, "id", r.ID)
		}
		// What the requester sends back (its next logs request) fits the
		// provider's limit, whatever offset it was given.
		next, _ := json.Marshal(jobIDRequest{ID: "0123456789abcdef", Offset: r.Offset})
		if len(next) > wireLogs.limits.MaxRequest {
			t.Fatalf("a logs request of %d bytes, over the limit of %d", len(next), wireLogs.limits.MaxRequest)
		}
	})
}

// FuzzGoRequest: jobs/go/1's request, as handleJobGo decodes it; its env
// goes into the container only through jobs.ValidateGoEnv.
func FuzzGoRequest(f *testing.F) {
	rv := jobs.Rendezvous{Nodes: 2, ProcsPerNode: 1, NodeRank: 1, MasterAddr: "10.0.0.1", MasterPort: 29500,
		Workers: []string{"10.0.0.1:29500", "10.0.0.2:29500"}, Framework: "pytorch"}
	b, _ := json.Marshal(goRequest{ID: "0123456789abcdef", Env: rv.Env()})
	f.Add(b)
	rv.Framework = "tensorflow"
	b, _ = json.Marshal(goRequest{ID: "0123456789abcdef", Env: rv.Env()})
	f.Add(b)
	f.Add([]byte(`{"id":"0123456789abcdef","env":["LD_PRELOAD=/tmp/x.so"]}`))
	f.Add([]byte(`{"id":"0123456789abcdef","env":["MASTER_ADDR=a\nLD_PRELOAD=x","RANK=-1"]}`))
	f.Add([]byte(`{"id":"0123456789abcdef","env":["RANK=1","RANK=2","TF_CONFIG={"]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) > wireGo.limits.MaxRequest {
			return
		}
		var g goRequest
		if json.Unmarshal(b, &g) != nil {
			return
		}
		if jobs.ValidateGoEnv(g.Env) != nil {
			return
		}
		seen := map[string]bool{}
		for _, kv := range g.Env {
			k, v, ok := strings.Cut(kv, "=")
			switch {
			case !ok || k == "":
				t.Fatalf("accepted env entry %q: not KEY=VALUE", kv)
			case seen[k]:
				t.Fatalf("accepted env key %s twice", k)
			case strings.ContainsAny(v, "\x00\r\n"):
				t.Fatalf("accepted env %s with a NUL or a line break", k)
			case strings.HasPrefix(k, "LD_") || k == "PATH" || k == "NVIDIA_VISIBLE_DEVICES" || k == "CUDA_VISIBLE_DEVICES":
				t.Fatalf("accepted env %s, which the launcher does not set", k)
			}
			seen[k] = true
		}
	})
}

// FuzzProviderJobID: the ID a provider answers for a job the requester
// named ours; whenever it is accepted, the requester can name a file by
// it.
func FuzzProviderJobID(f *testing.F) {
	for _, got := range []string{"0123456789abcdef", "fedcba9876543210", "../config", "0123456789ABCDEF", "", "0123456789abcde\x00", "0123456789abcdef0"} {
		f.Add("0123456789abcdef", got)
	}
	f.Fuzz(func(t *testing.T, ours, got string) {
		id, err := providerJobID(ours, got)
		if err != nil {
			return
		}
		switch {
		case id == "" && got != ours:
			t.Fatalf("provider's ID %q for job %q: kept as the same", got, ours)
		case id != "":
			mustJobID(t, "the provider's job ID", id)
		}
	})
}

// FuzzPrepareReply: a gang rank's answer to jobs/prepare/1, as
// submitGang decodes and uses it: the rank's job ID (kept only when a job
// ID) and its host and port, which reach every rank's container through
// the launcher contract.
func FuzzPrepareReply(f *testing.F) {
	b, _ := json.Marshal(prepareReply{Job: api.Job{Job: jobs.Job{ID: "0123456789abcdef", State: jobs.Preparing}}, Host: "10.0.0.1", Port: 29500})
	f.Add(b)
	f.Add([]byte(`{"job":{"id":"../config"},"host":"10.0.0.1","port":29500}`))
	f.Add([]byte(`{"job":{"id":"0123456789abcdef"},"host":"a\nLD_PRELOAD=/x","port":-1}`))
	f.Add([]byte(`{"job":{"id":"0123456789abcdef"},"host":"::1","port":70000}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) > wirePrepare.limits.MaxResponse {
			return
		}
		var rep prepareReply
		if json.Unmarshal(b, &rep) != nil {
			return
		}
		const ours = "0123456789abcdef"
		if got := rep.Job.ID; got != ours && checkJobID(got) == nil {
			mustJobID(t, "the rank's job ID", got)
		}
		worker := net.JoinHostPort(rep.Host, strconv.Itoa(rep.Port))
		for _, fw := range []string{"pytorch", "tensorflow", "none"} {
			rv := jobs.Rendezvous{Nodes: 2, ProcsPerNode: 1, NodeRank: 1, MasterAddr: rep.Host, MasterPort: rep.Port,
				Workers: []string{worker, "10.0.0.2:29500"}, Framework: fw}
			if err := jobs.ValidateGoEnv(rv.Env()); err != nil {
				continue // the other rank's provider refuses it: the gang fails, nothing runs
			}
			for _, kv := range rv.Env() {
				if strings.ContainsAny(kv, "\x00\r\n") {
					t.Fatalf("a rank's host %q put a line break into env %q", rep.Host, kv)
				}
			}
		}
	})
}

// The provider's handlers, called as a hostile peer would reach them.

// noRuntime and noContent stand in for Docker and the blockstore where
// a handler must never reach them: any call panics.
type noRuntime struct{ jobs.Runtime }
type noContent struct{ jobs.Content }

// finishedJob gives m a jobs.Manager in m's repo holding one completed
// job, id, whose output is log; m then provides it for deal.
func finishedJob(t *testing.T, m *Provider, id string, deal market.Deal, log []byte) {
	t.Helper()
	dir := filepath.Join(m.cfg.Dir, "jobs", id)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC()
	rec, _ := json.Marshal(jobs.Job{ID: id, Spec: jobs.Spec{Image: "scratch"}, State: jobs.Completed, CreatedAt: now, StartedAt: &now, FinishedAt: &now})
	if err := os.WriteFile(filepath.Join(dir, "job.json"), rec, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "output.log"), log, 0o600); err != nil {
		t.Fatal(err)
	}
	jm, err := jobs.NewManager(t.Context(), jobs.Config{Dir: filepath.Join(m.cfg.Dir, "jobs"), Runtime: noRuntime{}, Content: noContent{},
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(jm.Close)
	m.jobs = jm
	m.trackProvided(id, deal)
}

// fuzzLog is a provided job's output: a full chunk and a bit, so that
// offsets on either side of a chunk's end are reached.
var fuzzLog = func() []byte {
	b := make([]byte, maxLogChunk+1000)
	for i := range b {
		b[i] = byte('a' + i%26)
	}
	return b
}()

// FuzzHostilePeer sends what a hostile requester (the peer of the deal,
// with a funded channel) sends a provider on a dev chain: each input is
// up to maxHostileMessages messages (NUL between them, which JSON never
// holds), each sent to every handler in turn: jobs/start, voucher,
// status, cancel and logs. None panics, a refused start claims no deal,
// a refused voucher changes nothing held, the job's answers are about
// the job asked, a logs answer is the log at the offset asked, and a
// stranger gets nothing. A message "voucher" is replaced by a voucher
// the attacker signed.
//
// The provider has no market (m.market is nil): start is sent while it
// has no jobs.Manager either, so checkStart refuses at "cannot run
// jobs" after its job ID and replay checks, before the market.
// Building the dev chain takes half a second, so an input carries
// many messages.
func FuzzHostilePeer(f *testing.F) {
	const id = "00000000000000f1"
	join := func(msgs ...string) []byte { return []byte(strings.Join(msgs, "\x00")) }
	f.Add(join(
		`{"id":"`+id+`"}`,
		`{"id":"`+id+`","offset":262144}`,
		`{"id":"`+id+`","offset":263144}`,
		`{"id":"`+id+`","offset":1000000}`,
		`{"id":"`+id+`","reason":"another rank failed"}`,
		`{"deal_id":"deal-1","job_id":"`+id+`","spec":{"image":"scratch"}}`,
		"voucher",
		`{"chain_id":"1337","cumulative_amount":"100"}`,
	))
	f.Add(join(
		`{"id":"../jobs/`+id+`"}`,
		`{"id":"`+id+`","offset":-5}`,
		`{"id":"`+id+`","offset":9223372036854775807}`,
		`{"deal_id":"deal-1","job_id":"../../x","spec":{"image":"scratch"}}`,
		`{"deal_id":"deal-1","job_id":"0123456789ABCDEF","spec":{"image":"scratch"}}`,
		`{"id":1}`,
	))
	f.Fuzz(func(t *testing.T, b []byte) {
		msgs := bytes.Split(b, []byte{0})
		if len(msgs) > maxHostileMessages {
			msgs = msgs[:maxHostileMessages]
		}
		h := newHostile(t)
		p := h.prov
		ctx := t.Context()
		for _, b := range msgs {
			if _, err := p.handleJobStart(ctx, h.from, b); err == nil {
				t.Fatalf("a provider without a runtime started %q", b)
			}
		}
		if p.startedDeals[h.deal.ID] {
			t.Fatalf("a refused start claimed the deal: %q", b)
		}
		finishedJob(t, p, id, h.deal, fuzzLog)
		for _, b := range msgs {
			honest := string(b) == "voucher"
			if honest {
				b = h.voucher(big.NewInt(100))
			}
			held := h.held()
			if _, err := p.handleJobVoucher(ctx, h.from, b); err != nil {
				if honest {
					t.Fatalf("the requester's own voucher for 100 refused: %v", err)
				}
				if got := h.held(); got.Cmp(held) != 0 {
					t.Fatalf("a refused voucher changed what is held: %s, then %s", held, got)
				}
			}
			hostileJobRequest(t, p, h.from, id, b)
		}
	})
}

// maxHostileMessages bounds one FuzzHostilePeer input.
const maxHostileMessages = 32

// hostileJobRequest sends b to the handlers of jobs/status, cancel and
// logs of p, whose one provided job id (a completed one, with fuzzLog
// as its output) is from's, and then as a stranger.
func hostileJobRequest(t *testing.T, p *Provider, from peer.ID, id string, b []byte) {
	t.Helper()
	for _, w := range []struct {
		name   string
		handle p2p.Handler
	}{{"status", p.handleJobStatus}, {"cancel", p.handleJobCancel}, {"logs", p.handleJobLogs}} {
		if resp, err := w.handle(t.Context(), "stranger", b); err == nil {
			t.Fatalf("a stranger's %s request %q answered: %.100s", w.name, b, resp)
		}
		resp, err := w.handle(t.Context(), from, b)
		if err != nil {
			continue
		}
		var r jobIDRequest
		if err := json.Unmarshal(b, &r); err != nil || r.ID != id {
			t.Fatalf("%s answered a request for %q: %.100s", w.name, b, resp)
		}
		if w.name != "logs" {
			var j jobs.Job
			if err := json.Unmarshal(resp, &j); err != nil || j.ID != id {
				t.Fatalf("%s answer %.100q for job %s (%v)", w.name, resp, id, err)
			}
			continue
		}
		if len(resp) > wireLogs.limits.MaxResponse {
			t.Fatalf("a logs answer of %d bytes, over the requester's limit of %d", len(resp), wireLogs.limits.MaxResponse)
		}
		var c logChunk
		if err := json.Unmarshal(resp, &c); err != nil {
			t.Fatalf("logs answer: %v", err)
		}
		if len(c.Data) > maxLogChunk {
			t.Fatalf("a log chunk of %d bytes, over %d", len(c.Data), maxLogChunk)
		}
		if r.Offset < 0 || r.Offset > 1<<40 {
			// handleJobLogs ignores Seek's error: at an offset the file
			// cannot seek to (negative, or past the filesystem's
			// largest file) it answers from the start, with next_offset
			// the offset plus what it read (overflowing near 2^63).
			// The requester only hears its own job's log again.
			continue
		}
		at := min(r.Offset, int64(len(fuzzLog)))
		if want := fuzzLog[at:min(at+maxLogChunk, int64(len(fuzzLog)))]; !bytes.Equal(c.Data, want) || c.Bytes != r.Offset+int64(len(c.Data)) {
			t.Fatalf("logs at offset %d: %d bytes, next offset %d; want %d bytes, next %d", r.Offset, len(c.Data), c.Bytes, len(want), r.Offset+int64(len(want)))
		}
		// Done only at the end; a full chunk may end exactly there and
		// leave done to the next answer.
		end := r.Offset+int64(len(c.Data)) >= int64(len(fuzzLog))
		if c.Done && !end || !c.Done && end && len(c.Data) < maxLogChunk {
			t.Fatalf("logs at offset %d of %d bytes: %d bytes, done %v", r.Offset, len(fuzzLog), len(c.Data), c.Done)
		}
	}
}

// The requester's side: a hostile provider's answers, through the real
// request path over a mocknet.

// hostileProvider is a requester on a mocknet whose one remote job's
// provider answers every request with answer.
type hostileProvider struct {
	node   *p2p.Node
	req    *Requester
	mu     sync.Mutex
	answer []byte
	asked  int
}

func newHostileProvider(f testing.TB) *hostileProvider {
	f.Helper()
	mn := mocknet.New()
	f.Cleanup(func() { mn.Close() })
	a, err := mn.GenPeer()
	if err != nil {
		f.Fatal(err)
	}
	b, err := mn.GenPeer()
	if err != nil {
		f.Fatal(err)
	}
	if err := mn.LinkAll(); err != nil {
		f.Fatal(err)
	}
	if _, err := mn.ConnectPeers(a.ID(), b.ID()); err != nil {
		f.Fatal(err)
	}
	hp := &hostileProvider{node: &p2p.Node{Host: a}}
	for _, w := range []wire{wireStatus, wireCancel, wireLogs} {
		p2p.Handle(b, hp.node.ProtocolID(w.id), w.limits, slog.New(slog.NewTextHandler(io.Discard, nil)), func(context.Context, peer.ID, []byte) ([]byte, error) {
			hp.mu.Lock()
			defer hp.mu.Unlock()
			hp.asked++
			if hp.asked > 1 && w == wireLogs {
				return []byte(`{"done":true}`), nil // one hostile chunk, then the end
			}
			return hp.answer, nil
		})
	}
	return hp
}

// record gives the requester, in a new repo dir, one started job on
// the hostile provider, and has the provider answer with answer.
func (hp *hostileProvider) record(t *testing.T, answer []byte) *Record {
	t.Helper()
	hp.req = testRequester(t, Config{Dir: t.TempDir(), P2P: hp.node})
	var prov peer.ID
	for _, p := range hp.req.p2p.Host.Network().Peers() {
		prov = p
	}
	rj := &Record{ID: "0123456789abcdef", Remote: "fedcba9876543210", Provider: prov.String(), Deal: fuzzDeal, Vouched: "0"}
	hp.req.records[rj.ID] = rj
	hp.mu.Lock()
	hp.answer, hp.asked = answer, 0
	hp.mu.Unlock()
	return rj
}

// FuzzJobAnswer: a provider's api.Job answer to status and cancel, as
// remoteStatus and cancelRemote decode it. Whatever the provider says of
// its times, one sighting pays at most one interval, and the record it
// updates is saved and loads again (the requester never loses track of
// a job it pays for).
func FuzzJobAnswer(f *testing.F) {
	now := time.Now().UTC()
	yearAgo, future := now.Add(-365*24*time.Hour), now.Add(365*24*time.Hour)
	for _, j := range []api.Job{
		{Job: jobs.Job{ID: "fedcba9876543210", State: jobs.Running, CreatedAt: yearAgo, StartedAt: &yearAgo}},
		{Job: jobs.Job{ID: "../config", State: jobs.Completed, CreatedAt: yearAgo, StartedAt: &yearAgo, FinishedAt: &future}},
		{Job: jobs.Job{ID: "fedcba9876543210", State: "bogus"}, Provider: "someone else"},
	} {
		b, _ := json.Marshal(j)
		f.Add(b)
	}
	f.Add([]byte(`{"state":"completed","started_at":"0001-01-01T00:00:00Z","finished_at":"9999-12-31T23:59:59-23:59"}`))
	f.Add([]byte(`{"state":"running","history":[{"state":"running","at":"2000-01-01T00:00:00Z"}],"exit_code":-1}`))
	hp := newHostileProvider(f)
	f.Fuzz(func(t *testing.T, b []byte) {
		rj := hp.record(t, b)
		m := hp.req
		j, err := m.remoteStatus(t.Context(), rj)
		if err == nil {
			if j.ID != rj.ID || j.Provider != rj.Provider {
				t.Fatalf("status answer named job %q of %q", j.ID, j.Provider)
			}
			rj.see(j, time.Now())
			ahead := 10 * time.Second
			if got, most := jobPayable(rj, ahead), dealCost(rj.Deal, max(ahead, time.Second)); got.Cmp(most) > 0 {
				t.Fatalf("one sighting of %q pays %s, more than what runs ahead (%s)", b, got, most)
			}
			if err := m.saveRemote(rj); err != nil {
				t.Fatalf("the record after answer %q: %v", b, err)
			}
			if got := testRequester(t, Config{Dir: m.cfg.Dir}).records[rj.ID]; got == nil || got.Remote != rj.Remote || got.Deal.ID != rj.Deal.ID {
				t.Fatalf("the record after answer %q did not load again: %+v", b, got)
			}
			hp.record(t, b)
		}
		if j, err := m.cancelRemote(t.Context(), "0123456789abcdef"); err == nil && (j.ID != "0123456789abcdef" || j.Provider != rj.Provider) {
			t.Fatalf("cancel answer named job %q of %q", j.ID, j.Provider)
		}
	})
}

// FuzzLogChunk: a provider's answer to jobs/logs/1, as remoteLogs
// decodes it and writes its data out. It never panics, takes a chunk only
// if its offset follows its bytes, writes exactly the chunk's data, and
// ends (here the provider gives the same answer to every request).
func FuzzLogChunk(f *testing.F) {
	for _, c := range []logChunk{
		{Data: []byte("hello\n"), Done: true, Bytes: 6},
		{Data: []byte("partial"), Bytes: 1 << 40},
		{Data: bytes.Repeat([]byte("x"), maxLogChunk), Bytes: maxLogChunk},
		{Bytes: -1},
	} {
		b, _ := json.Marshal(c)
		f.Add(b)
	}
	f.Add([]byte(`{"data":"not base64","next_offset":1}`))
	f.Add([]byte(`{"data":null,"done":true,"next_offset":-9223372036854775808}`))
	hp := newHostileProvider(f)
	f.Fuzz(func(t *testing.T, b []byte) {
		hp.record(t, b)
		ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
		defer cancel()
		var out bytes.Buffer
		err := hp.req.remoteLogs(ctx, "0123456789abcdef", false, &out)
		if ctx.Err() != nil {
			t.Fatalf("remoteLogs did not end on answer %.200q", b)
		}
		var c logChunk
		decoded := len(b) <= wireLogs.limits.MaxResponse && json.Unmarshal(b, &c) == nil
		// Taken: it decodes and its offset follows its bytes from 0. A
		// full chunk asks for the next, which here is the same answer
		// again, whose offset no longer follows: refused after the first.
		follows := decoded && c.Bytes == int64(len(c.Data))
		ok := follows && len(c.Data) < maxLogChunk
		switch {
		case ok && err != nil:
			t.Fatalf("answer %.200q is a valid chunk, but remoteLogs: %v", b, err)
		case !ok && err == nil:
			t.Fatalf("answer %.200q is no valid last chunk, but remoteLogs took it", b)
		case follows && !bytes.Equal(out.Bytes(), c.Data):
			t.Fatalf("answer %.200q: wrote %d bytes, the chunk holds %d", b, out.Len(), len(c.Data))
		case err != nil && errors.Is(err, context.Canceled):
			t.Fatal(err)
		}
	})
}
