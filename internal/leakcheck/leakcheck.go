// Package leakcheck fails a test whose goroutines outlive it: every
// goroutine a service starts must end when the service is closed, or
// tests and daemons slowly fill with ones nobody waits for.
//
// It wraps go.uber.org/goleak (which reads the runtime's stacks) with
// what every test here wants: goroutines alive before the test are not
// its own, the check runs after the test's other cleanups, it waits long
// enough for a busy CI machine, and the process-wide background
// goroutines of the libraries underneath are not counted.
//
// It sits under internal/ so that every package's tests may import it;
// it is imported only by tests.
package leakcheck

import (
	"testing"
	"time"

	"go.uber.org/goleak"
)

// Wait is how long the check waits for the test's goroutines to end
// before it fails the test: closing returns before every goroutine has
// unwound, and CI is a busy machine with two cores.
const Wait = 10 * time.Second

// Option changes what the check counts.
type Option struct{ g goleak.Option }

// IgnoreTopFunction leaves out goroutines whose stack has fn (fully
// qualified: "pkg/path.(*Type).Method") on top. Say where you use it why
// such a goroutine may outlive the test.
func IgnoreTopFunction(fn string) Option { return Option{goleak.IgnoreTopFunction(fn)} }

// IgnoreAnyFunction leaves out goroutines whose stack has fn anywhere.
// Say where you use it why such a goroutine may outlive the test.
func IgnoreAnyFunction(fn string) Option { return Option{goleak.IgnoreAnyFunction(fn)} }

// processWide are goroutines that libraries start once per process, on
// first use, and never end: they belong to no test and no service.
var processWide = []Option{
	// The sweeper behind every libp2p bandwidth meter (a package-level
	// registry); it parks when the meters go idle but never exits.
	IgnoreAnyFunction("github.com/libp2p/go-flow-metrics.(*sweeper).run"),
}

// Check fails t if goroutines started after this call are still running
// Wait after t ends. Call it first in the test: its cleanup then runs
// after the test's other cleanups (they run last registered first), so
// services closed by a cleanup are closed before it looks. goroutines
// are not told apart by test, so a test that calls t.Parallel cannot use
// it.
func Check(t testing.TB, opts ...Option) {
	t.Helper()
	check(t, Wait, opts)
}

// check is Check with the wait as a parameter, for the package's tests.
func check(t testing.TB, wait time.Duration, opts []Option) {
	t.Helper()
	gopts := []goleak.Option{goleak.IgnoreCurrent()}
	for _, o := range append(append([]Option(nil), processWide...), opts...) {
		gopts = append(gopts, o.g)
	}
	t.Cleanup(func() {
		t.Helper()
		deadline := time.Now().Add(wait)
		for {
			// Find itself polls for a moment (up to about half a
			// second) before it reports what is left.
			err := goleak.Find(gopts...)
			if err == nil {
				return
			}
			if time.Now().After(deadline) {
				t.Errorf("leakcheck: goroutines started by the test still running %s after it ended: %v", wait, err)
				return
			}
		}
	})
}
