package receipt

import (
	"time"

	"github.com/aixblock/aixblock/internal/peerlimit"
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

// limiter is the receipts protocol's peerlimit.Limiter.
type limiter = peerlimit.Limiter

func newLimiter(l Limits, now time.Time) *limiter {
	l = l.withDefaults()
	return peerlimit.New(peerlimit.Config{Period: time.Minute, PeriodName: "a minute", Noun: "requests", Asker: "peer",
		PerPeer: l.PerMinute, Burst: l.Burst, Total: l.TotalPerMinute, TotalBurst: l.TotalBurst,
		Peers: l.Peers, CrowdRetry: time.Minute}, now)
}
