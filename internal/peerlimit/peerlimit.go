// Package peerlimit admits what peers ask of a daemon: a token bucket
// per peer and one for all peers together (against many peer IDs), with
// the peers remembered bounded. A refusal says why and when to come
// back. The proof-of-GPU challenge and the receipts protocol use it.
package peerlimit

import (
	"fmt"
	"math"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
)

// Config sets the buckets and the words of a refusal.
type Config struct {
	// Period is the rates' unit (time.Hour, time.Minute); PeriodName
	// says it in a refusal ("an hour", "a minute").
	Period     time.Duration
	PeriodName string
	// Noun is what is asked ("challenges"), Asker who asks ("verifier").
	Noun, Asker string
	// Prefix starts a refusal by a bucket ("rate limited: ").
	Prefix string
	// PerPeer and Burst are one peer's bucket; Total and TotalBurst all
	// peers'.
	PerPeer    float64
	Burst      int
	Total      float64
	TotalBurst int
	// Peers is the most askers whose buckets are remembered; a new one
	// beyond it waits CrowdRetry.
	Peers      int
	CrowdRetry time.Duration
}

// bucket is a token bucket: burst tokens, refilled at rate per Period.
type bucket struct {
	tokens float64
	at     time.Time
}

// Limiter holds the buckets; its caller holds the lock.
type Limiter struct {
	c     Config
	total bucket
	peers map[peer.ID]*bucket
}

// New starts every bucket full at now.
func New(c Config, now time.Time) *Limiter {
	return &Limiter{c: c, total: bucket{tokens: float64(c.TotalBurst), at: now}, peers: map[peer.ID]*bucket{}}
}

func (l *Limiter) level(b bucket, now time.Time, rate float64, burst int) float64 {
	return math.Min(float64(burst), b.tokens+float64(max(now.Sub(b.at), 0))/float64(l.c.Period)*rate)
}

// wait is how long until b holds a token, zero if it does; rounded to
// the second and one more, so that coming back then finds one.
func (l *Limiter) wait(b bucket, now time.Time, rate float64, burst int) time.Duration {
	lvl := l.level(b, now, rate, burst)
	if lvl >= 1 {
		return 0
	}
	return time.Duration((1-lvl)/rate*float64(l.c.Period)).Round(time.Second) + time.Second
}

func (l *Limiter) take(b *bucket, now time.Time, rate float64, burst int) {
	b.tokens, b.at = l.level(*b, now, rate, burst)-1, now
}

// Admit spends a token of from's bucket and one of the total, or says
// why not and how long to wait.
func (l *Limiter) Admit(from peer.ID, now time.Time) (string, time.Duration) {
	c := l.c
	b := l.peers[from]
	if b == nil {
		if len(l.peers) >= c.Peers {
			l.prune(now)
		}
		if len(l.peers) >= c.Peers {
			return fmt.Sprintf("%d %ss asked lately; try later", len(l.peers), c.Asker), c.CrowdRetry
		}
		b = &bucket{tokens: float64(c.Burst), at: now}
	}
	if w := l.wait(*b, now, c.PerPeer, c.Burst); w > 0 {
		return fmt.Sprintf("%s%d %s, then %g %s, per %s", c.Prefix, c.Burst, c.Noun, c.PerPeer, c.PeriodName, c.Asker), w
	}
	if w := l.wait(l.total, now, c.Total, c.TotalBurst); w > 0 {
		return fmt.Sprintf("%s%d %s, then %g %s, from all %ss", c.Prefix, c.TotalBurst, c.Noun, c.Total, c.PeriodName, c.Asker), w
	}
	l.take(b, now, c.PerPeer, c.Burst)
	l.take(&l.total, now, c.Total, c.TotalBurst)
	l.peers[from] = b
	return "", 0
}

// prune forgets the buckets that are full again: they hold nothing a new
// bucket would not.
func (l *Limiter) prune(now time.Time) {
	for p, b := range l.peers {
		if l.level(*b, now, l.c.PerPeer, l.c.Burst) >= float64(l.c.Burst) {
			delete(l.peers, p)
		}
	}
}
