package node

import (
	"testing"

	"github.com/aixblock/aixblock/gpu/challenge"
	"github.com/aixblock/aixblock/jobs/jobstest"
)

// The image the tests and `make job-image` build is the one a daemon
// runs its challenges in by default.
func TestChallengeImageName(t *testing.T) {
	if jobstest.ChallengeImage != challenge.CPUImage {
		t.Fatalf("jobstest builds %q, the daemon runs %q", jobstest.ChallengeImage, challenge.CPUImage)
	}
}
