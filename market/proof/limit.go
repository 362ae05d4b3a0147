package proof

import (
	"fmt"
	"math"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
)

// Limits bound what verifiers may ask of a provider. Challenges are free
// (the package doc says why), so these are what keeps a verifier, or a
// crowd of fresh peer IDs, from keeping the GPUs busy.
type Limits struct {
	// PerHour is the challenges one verifier may start per hour once its
	// burst is spent; zero: 3.
	PerHour float64
	// Burst is the challenges one verifier may start at once; zero: 3.
	Burst int
	// TotalPerHour and TotalBurst bound all verifiers together, against
	// many peer IDs; zero: 12 and 6.
	TotalPerHour float64
	TotalBurst   int
	// Concurrent is the challenges computing at once, from all
	// verifiers; zero: 1. A verifier has at most one challenge open.
	Concurrent int
	// Peers is the most verifiers whose buckets are remembered; a new
	// one beyond it is refused until buckets fill up again; zero: 4096.
	Peers int
}

func (l Limits) withDefaults() Limits {
	if l.PerHour == 0 {
		l.PerHour = 3
	}
	if l.Burst == 0 {
		l.Burst = 3
	}
	if l.TotalPerHour == 0 {
		l.TotalPerHour = 12
	}
	if l.TotalBurst == 0 {
		l.TotalBurst = 6
	}
	if l.Concurrent == 0 {
		l.Concurrent = 1
	}
	if l.Peers == 0 {
		l.Peers = 4096
	}
	return l
}

// bucket is a token bucket: burst tokens, refilled at perHour.
type bucket struct {
	tokens float64
	at     time.Time
}

// level is the bucket's tokens at now.
func (b bucket) level(now time.Time, perHour float64, burst int) float64 {
	return math.Min(float64(burst), b.tokens+max(now.Sub(b.at), 0).Hours()*perHour)
}

// wait is how long until the bucket holds a token, zero if it does.
func (b bucket) wait(now time.Time, perHour float64, burst int) time.Duration {
	lvl := b.level(now, perHour, burst)
	if lvl >= 1 {
		return 0
	}
	return time.Duration((1-lvl)/perHour*float64(time.Hour)).Round(time.Second) + time.Second
}

// take spends a token; the caller made sure there is one.
func (b *bucket) take(now time.Time, perHour float64, burst int) {
	b.tokens, b.at = b.level(now, perHour, burst)-1, now
}

// limiter holds the buckets; its caller holds the lock.
type limiter struct {
	lim   Limits
	total bucket
	peers map[peer.ID]*bucket
}

func newLimiter(l Limits, now time.Time) *limiter {
	l = l.withDefaults()
	return &limiter{lim: l, total: bucket{tokens: float64(l.TotalBurst), at: now}, peers: map[peer.ID]*bucket{}}
}

// admit spends a token of from's bucket and one of the total, or says
// why not and for how long.
func (l *limiter) admit(from peer.ID, now time.Time) (string, time.Duration) {
	lim := l.lim
	b := l.peers[from]
	if b == nil {
		if len(l.peers) >= lim.Peers {
			l.prune(now)
		}
		if len(l.peers) >= lim.Peers {
			return fmt.Sprintf("%d verifiers asked lately; try later", len(l.peers)), time.Hour / time.Duration(max(lim.PerHour, 1))
		}
		b = &bucket{tokens: float64(lim.Burst), at: now}
	}
	if wait := b.wait(now, lim.PerHour, lim.Burst); wait > 0 {
		return fmt.Sprintf("rate limited: %d challenges, then %g an hour, per verifier", lim.Burst, lim.PerHour), wait
	}
	if wait := l.total.wait(now, lim.TotalPerHour, lim.TotalBurst); wait > 0 {
		return fmt.Sprintf("rate limited: %d challenges, then %g an hour, from all verifiers", lim.TotalBurst, lim.TotalPerHour), wait
	}
	b.take(now, lim.PerHour, lim.Burst)
	l.total.take(now, lim.TotalPerHour, lim.TotalBurst)
	l.peers[from] = b
	return "", 0
}

// prune forgets the buckets that are full again: they hold nothing a
// new bucket would not.
func (l *limiter) prune(now time.Time) {
	for p, b := range l.peers {
		if b.level(now, l.lim.PerHour, l.lim.Burst) >= float64(l.lim.Burst) {
			delete(l.peers, p)
		}
	}
}
