package proof

import (
	"time"

	"github.com/aixblock/aixblock/internal/peerlimit"
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

// limiter is the challenge's peerlimit.Limiter.
type limiter = peerlimit.Limiter

func newLimiter(l Limits, now time.Time) *limiter {
	l = l.withDefaults()
	return peerlimit.New(peerlimit.Config{Period: time.Hour, PeriodName: "an hour", Noun: "challenges", Asker: "verifier",
		Prefix: "rate limited: ", PerPeer: l.PerHour, Burst: l.Burst, Total: l.TotalPerHour, TotalBurst: l.TotalBurst,
		Peers: l.Peers, CrowdRetry: time.Hour / time.Duration(max(l.PerHour, 1))}, now)
}
