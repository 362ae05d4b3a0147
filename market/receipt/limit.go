package receipt

import (
	"fmt"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"golang.org/x/time/rate"
)

// Limits bound how often peers may ask for receipts. A reply is cheap
// (the store's bytes, at most MaxServed of them) but not free, and a
// crowd of fresh peer IDs asking at once is what they are for.
type Limits struct {
	// PerMinute is the requests one peer may make a minute once its
	// burst is spent; zero: 6.
	PerMinute float64
	// Burst is the requests one peer may make at once; zero: 6.
	Burst int
	// TotalPerMinute and TotalBurst bound all peers together, against
	// many peer IDs; zero: 120 and 60.
	TotalPerMinute float64
	TotalBurst     int
	// Peers is the most askers whose buckets are remembered; a new one
	// beyond it is refused until buckets fill up again; zero: 4096.
	Peers int
}

func (l Limits) withDefaults() Limits {
	if l.PerMinute == 0 {
		l.PerMinute = 6
	}
	if l.Burst == 0 {
		l.Burst = 6
	}
	if l.TotalPerMinute == 0 {
		l.TotalPerMinute = 120
	}
	if l.TotalBurst == 0 {
		l.TotalBurst = 60
	}
	if l.Peers == 0 {
		l.Peers = 4096
	}
	return l
}

// limiter holds the token buckets; its caller holds the lock.
type limiter struct {
	lim   Limits
	total *rate.Limiter
	peers map[peer.ID]*rate.Limiter
}

func newLimiter(l Limits, now time.Time) *limiter {
	l = l.withDefaults()
	total := rate.NewLimiter(perMinute(l.TotalPerMinute), l.TotalBurst)
	total.AllowN(now, 0) // start the bucket's clock at now
	return &limiter{lim: l, total: total, peers: map[peer.ID]*rate.Limiter{}}
}

func perMinute(n float64) rate.Limit { return rate.Limit(n / 60) }

// admit spends a token of from's bucket and one of the total, or says
// why not and for how long.
func (l *limiter) admit(from peer.ID, now time.Time) (string, time.Duration) {
	b := l.peers[from]
	if b == nil {
		if len(l.peers) >= l.lim.Peers {
			l.prune(now)
		}
		if len(l.peers) >= l.lim.Peers {
			return fmt.Sprintf("%d peers asked lately; try later", len(l.peers)), time.Minute
		}
		b = rate.NewLimiter(perMinute(l.lim.PerMinute), l.lim.Burst)
		b.AllowN(now, 0)
	}
	if w := wait(b, now); w > 0 {
		return fmt.Sprintf("%d requests, then %g a minute, per peer", l.lim.Burst, l.lim.PerMinute), w
	}
	if w := wait(l.total, now); w > 0 {
		return fmt.Sprintf("%d requests, then %g a minute, from all peers", l.lim.TotalBurst, l.lim.TotalPerMinute), w
	}
	b.AllowN(now, 1)
	l.total.AllowN(now, 1)
	l.peers[from] = b
	return "", 0
}

// wait is how long until b holds a token, rounded up to the second;
// zero if it does.
func wait(b *rate.Limiter, now time.Time) time.Duration {
	t := b.TokensAt(now)
	if t >= 1 {
		return 0
	}
	return time.Duration((1-t)/float64(b.Limit())*float64(time.Second)).Truncate(time.Second) + time.Second
}

// prune forgets the buckets that are full again: they hold nothing a
// new bucket would not.
func (l *limiter) prune(now time.Time) {
	for p, b := range l.peers {
		if b.TokensAt(now) >= float64(l.lim.Burst) {
			delete(l.peers, p)
		}
	}
}
