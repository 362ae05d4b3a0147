package proof

import (
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
)

// The buckets: a verifier's burst then its hourly rate, all verifiers'
// together, and the verifiers remembered, each refusal with its reason
// and wait.
func TestLimiter(t *testing.T) {
	ids := make([]peer.ID, 4)
	for i := range ids {
		_, ids[i] = newKey(t, crypto.Ed25519)
	}
	type ask struct {
		after time.Duration // since the previous ask
		from  int
		want  string // "" admitted, else part of the refusal
		wait  time.Duration
	}
	for _, c := range []struct {
		name string
		lim  Limits
		asks []ask
	}{
		{"a verifier's burst, then its rate", Limits{Burst: 2, PerHour: 3}, []ask{
			{0, 0, "", 0}, {0, 0, "", 0}, {0, 0, "per verifier", 20*time.Minute + time.Second},
			{0, 1, "", 0}, {19 * time.Minute, 0, "per verifier", 61 * time.Second}, {time.Minute, 0, "", 0},
		}},
		{"all verifiers together", Limits{TotalBurst: 2, TotalPerHour: 6}, []ask{
			{0, 0, "", 0}, {0, 1, "", 0}, {0, 2, "from all verifiers", 10*time.Minute + time.Second}, {10 * time.Minute, 2, "", 0},
		}},
		{"verifiers remembered", Limits{Peers: 2, Burst: 1, PerHour: 1}, []ask{
			{0, 0, "", 0}, {0, 1, "", 0}, {0, 2, "2 verifiers asked lately", time.Hour}, {time.Hour, 2, "", 0},
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			now := testNow
			l := newLimiter(c.lim, now)
			for i, a := range c.asks {
				now = now.Add(a.after)
				why, wait := l.Admit(ids[a.from], now)
				if (why == "") != (a.want == "") || !strings.Contains(why, a.want) || wait != a.wait {
					t.Fatalf("ask %d: %q, retry in %v; want %q, retry in %v", i, why, wait, a.want, a.wait)
				}
			}
		})
	}
}
