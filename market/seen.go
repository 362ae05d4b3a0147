package market

import "time"

// maxSeenOffers bounds the offer IDs a provider remembers: a few hundred
// KiB whatever the network sends.
const maxSeenOffers = 4096

// seenOffers are the IDs of offers the bid engine judged (admitted by the
// requester's limits, then bid on or declined), so that a copy (gossip and
// direct, or a replay) is not judged twice. An offer refused by the limits
// is not kept: it changed nothing, and keeping it would let one peer fill
// memory with offers that cost it nothing. At most max are kept, each for
// an hour (an offer's deadline is at most an hour away); when full, the
// oldest goes. The caller holds Market.mu.
type seenOffers struct {
	at    map[string]time.Time
	order []string // oldest first
	max   int
}

func newSeenOffers() seenOffers {
	return seenOffers{at: map[string]time.Time{}, max: maxSeenOffers}
}

func (s *seenOffers) has(id string) bool {
	_, ok := s.at[id]
	return ok
}

func (s *seenOffers) add(id string, now time.Time) {
	if s.has(id) {
		return
	}
	for len(s.order) >= s.max {
		delete(s.at, s.order[0])
		s.order = s.order[1:]
	}
	s.at[id] = now
	s.order = append(s.order, id)
}

// prune forgets IDs kept longer than ttl.
func (s *seenOffers) prune(now time.Time, ttl time.Duration) {
	i := 0
	for i < len(s.order) && now.Sub(s.at[s.order[i]]) > ttl {
		delete(s.at, s.order[i])
		i++
	}
	s.order = s.order[i:]
	if len(s.order) == 0 {
		s.order = nil // let a drained backing array go
	}
}

func (s *seenOffers) len() int { return len(s.at) }
