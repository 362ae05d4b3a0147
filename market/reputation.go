package market

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/aixblock/aixblock/internal/atomicfile"
)

// ProviderRecord is what a requester remembers of one provider.
type ProviderRecord struct {
	Completed int `json:"completed"`
	Failed    int `json:"failed"`
	NoShow    int `json:"no_show"`
	// LatencyMs is a moving average of the time from offer to bid.
	LatencyMs float64 `json:"latency_ms"`
}

// Score is the share of deals that went well, smoothed so that a new
// provider starts at one half: (completed+1) / (all+2).
func (r ProviderRecord) Score() float64 {
	return float64(r.Completed+1) / float64(r.Completed+r.Failed+r.NoShow+2)
}

// Reputation is the local record of providers, persisted to a JSON file
// (replaced atomically) when one is given.
type Reputation struct {
	path string
	mu   sync.Mutex
	m    map[string]ProviderRecord
}

// OpenReputation reads path; empty keeps the record in memory.
func OpenReputation(path string) (*Reputation, error) {
	r := &Reputation{path: path, m: map[string]ProviderRecord{}}
	if path == "" {
		return r, nil
	}
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return r, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reputation: %w", err)
	}
	if err := json.Unmarshal(b, &r.m); err != nil {
		return nil, fmt.Errorf("reputation %s is corrupt: %w", path, err)
	}
	return r, nil
}

// Get is the record of provider p.
func (r *Reputation) Get(p string) ProviderRecord {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.m[p]
}

// All is every record.
func (r *Reputation) All() map[string]ProviderRecord {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make(map[string]ProviderRecord, len(r.m))
	for k, v := range r.m {
		out[k] = v
	}
	return out
}

func (r *Reputation) update(p string, f func(*ProviderRecord)) {
	r.mu.Lock()
	rec := r.m[p]
	f(&rec)
	r.m[p] = rec
	var b []byte
	if r.path != "" {
		b, _ = json.MarshalIndent(r.m, "", "  ")
	}
	r.mu.Unlock()
	if b != nil {
		// Best effort: the record only ranks providers, and the next
		// update writes it whole again.
		_ = atomicfile.WriteFile(r.path, b, 0o600)
	}
}

// Latency records how long p took to bid.
func (r *Reputation) Latency(p string, d time.Duration) {
	r.update(p, func(rec *ProviderRecord) {
		ms := float64(d) / float64(time.Millisecond)
		if rec.LatencyMs == 0 {
			rec.LatencyMs = ms
		} else {
			rec.LatencyMs = 0.8*rec.LatencyMs + 0.2*ms
		}
	})
}

// Completed, Failed and NoShow count a deal's outcome for p.
func (r *Reputation) Completed(p string) { r.update(p, func(rec *ProviderRecord) { rec.Completed++ }) }
func (r *Reputation) Failed(p string)    { r.update(p, func(rec *ProviderRecord) { rec.Failed++ }) }
func (r *Reputation) NoShow(p string)    { r.update(p, func(rec *ProviderRecord) { rec.NoShow++ }) }
