//go:build aixblock_hostile

package gpu

// A build for the tests that play a lying provider: its mock GPUs are
// advertised as the real cards they mimic. Release builds never carry
// the aixblock_hostile tag.
func init() { hostileMocks = true }
