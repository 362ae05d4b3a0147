package market

import (
	"errors"
	"sync"
)

// bidStats counts the bid engine's answers: bids made, and offers refused
// by NoBid code ("error" when the engine failed), for the daemon's metrics.
type bidStats struct {
	mu      sync.Mutex
	bids    int64
	refused map[string]int64
}

// bid is decideBid's answer, counted.
func (m *Market) bid(o *JobOffer, id string, ph *phases) ([]byte, error) {
	raw, err := m.decideBid(o, id, ph)
	s := &m.bidStats
	s.mu.Lock()
	defer s.mu.Unlock()
	var r *refusal
	switch {
	case err == nil:
		s.bids++
	case errors.As(err, &r):
		s.count(r.code)
	default:
		s.count("error")
	}
	return raw, err
}

func (s *bidStats) count(code string) {
	if s.refused == nil {
		s.refused = map[string]int64{}
	}
	s.refused[code]++
}

// BidCounts is how many offers this provider bid on and how many it
// refused, by NoBid code, since it started.
func (m *Market) BidCounts() (bids int64, refused map[string]int64) {
	s := &m.bidStats
	s.mu.Lock()
	defer s.mu.Unlock()
	refused = make(map[string]int64, len(s.refused))
	for k, v := range s.refused {
		refused[k] = v
	}
	return s.bids, refused
}
