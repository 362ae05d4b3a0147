package leakcheck

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// recorder is a test as check sees it: it keeps the cleanups to run them
// when the case says, and the errors to read them.
type recorder struct {
	testing.TB
	cleanups []func()
	errs     []string
}

func (r *recorder) Helper()                   {}
func (r *recorder) Cleanup(f func())          { r.cleanups = append(r.cleanups, f) }
func (r *recorder) Errorf(f string, a ...any) { r.errs = append(r.errs, fmt.Sprintf(f, a...)) }

// end runs the cleanups as the testing package does, last first.
func (r *recorder) end() {
	for i := len(r.cleanups) - 1; i >= 0; i-- {
		r.cleanups[i]()
	}
}

// parked is a goroutine that runs until release is closed.
func parked(release <-chan struct{}) { <-release }

func TestCheck(t *testing.T) {
	for _, tc := range []struct {
		name string
		// before starts a goroutine before the check; during, after it;
		// endEarly ends during's as the test ends (before the cleanups).
		before, during, endEarly bool
		opts                     []Option
		wantLeak                 bool
	}{
		{name: "nothing started"},
		{name: "one left running", during: true, wantLeak: true},
		{name: "one that ends as the test ends", during: true, endEarly: true},
		{name: "one running before the check", before: true},
		{name: "one left running but ignored", during: true,
			opts: []Option{IgnoreAnyFunction("github.com/aixblock/aixblock/internal/leakcheck.parked")}},
		{name: "one left running, another ignored", during: true, wantLeak: true,
			opts: []Option{IgnoreTopFunction("github.com/aixblock/aixblock/internal/leakcheck.elsewhere")}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			release := make(chan struct{})
			defer close(release) // whatever the case, nothing outlives it
			if tc.before {
				go parked(release)
			}
			r := &recorder{TB: t}
			check(r, 200*time.Millisecond, tc.opts)
			ending := make(chan struct{})
			if tc.during {
				go parked(ending)
			}
			if tc.endEarly {
				close(ending)
			}
			r.end()
			if !tc.endEarly {
				close(ending)
			}
			leaked := len(r.errs) > 0
			if leaked != tc.wantLeak {
				t.Fatalf("leak reported: %v, want %v (%q)", leaked, tc.wantLeak, r.errs)
			}
			if leaked && !strings.Contains(r.errs[0], "leakcheck.parked") {
				t.Errorf("the report does not name the leaked goroutine's function: %s", r.errs[0])
			}
		})
	}
}
