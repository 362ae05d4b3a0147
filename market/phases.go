package market

import (
	"context"
	"log/slog"
	"time"
)

// phases times the phases of one negotiation, bid or award for a debug
// line ("negotiation phases", "bid phases", "award phases", "award
// confirmed"): each phase's milliseconds under its own key, so that
// make bench-scale-real (AIXBLOCK_BENCH_PHASES=1) can say where a deal's
// time goes. Below debug level it costs a level check and a clock read.
type phases struct {
	log   *slog.Logger
	on    bool
	start time.Time
	last  time.Time
	attrs []any
}

func (m *Market) phases() *phases {
	on := m.log.Enabled(context.Background(), slog.LevelDebug)
	now := time.Now()
	return &phases{log: m.log, on: on, start: now, last: now}
}

// mark ends the phase called name now.
func (p *phases) mark(name string) {
	if !p.on {
		return
	}
	now := time.Now()
	p.attrs = append(p.attrs, name+"_ms", ms(now.Sub(p.last)))
	p.last = now
}

// add records a figure that is not a phase of its own (a bid's round
// trip, say).
func (p *phases) add(key string, v any) {
	if p.on {
		p.attrs = append(p.attrs, key, v)
	}
}

// done logs the phases under msg, with the total since the start.
func (p *phases) done(msg string, attrs ...any) {
	if !p.on {
		return
	}
	p.log.Debug(msg, append(append(attrs, p.attrs...), "total_ms", ms(time.Since(p.start)))...)
}

// ms is d in milliseconds, to a hundredth.
func ms(d time.Duration) float64 {
	return float64(d.Microseconds()/10) / 100
}
