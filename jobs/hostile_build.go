//go:build aixblock_hostile

package jobs

// A build for the tests that play a provider that cheats: every batch
// job's result gains a file the job never wrote, so its result CID is
// not the one an honest provider returns. Release builds never carry the
// aixblock_hostile tag.
func init() { tamperOutputs = true }
