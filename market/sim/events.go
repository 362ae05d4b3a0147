package sim

import (
	"container/heap"
	"time"
)

// events is the light tier's clock: a queue of callbacks by virtual
// time, run one at a time. Nothing runs between events, so the light
// tier needs no locks and is repeatable for a seed.
type events struct {
	now time.Duration
	q   eventQueue
	seq uint64
}

type event struct {
	at  time.Duration
	seq uint64 // ties run in the order they were queued
	f   func()
}

type eventQueue []event

func (q eventQueue) Len() int { return len(q) }
func (q eventQueue) Less(i, j int) bool {
	if q[i].at != q[j].at {
		return q[i].at < q[j].at
	}
	return q[i].seq < q[j].seq
}
func (q eventQueue) Swap(i, j int) { q[i], q[j] = q[j], q[i] }
func (q *eventQueue) Push(x any)   { *q = append(*q, x.(event)) }
func (q *eventQueue) Pop() any {
	old := *q
	e := old[len(old)-1]
	*q = old[:len(old)-1]
	return e
}

// after runs f d from now.
func (e *events) after(d time.Duration, f func()) {
	e.seq++
	heap.Push(&e.q, event{at: e.now + max(d, 0), seq: e.seq, f: f})
}

// runFor runs the events of the next d, then sets the clock to its end.
func (e *events) runFor(d time.Duration) {
	end := e.now + d
	for len(e.q) > 0 && e.q[0].at <= end {
		ev := heap.Pop(&e.q).(event)
		e.now = ev.at
		ev.f()
	}
	e.now = end
}

// runUntil runs events until done says so or none are left.
func (e *events) runUntil(done func() bool) {
	for !done() && len(e.q) > 0 {
		ev := heap.Pop(&e.q).(event)
		e.now = ev.at
		ev.f()
	}
}
