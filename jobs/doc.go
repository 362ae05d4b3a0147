// Package jobs runs a job's container on this node: the YAML spec and its
// validation, a small container Runtime interface with a Docker
// implementation (github.com/moby/moby/client), and a Manager that takes a
// job through pending → preparing → running → uploading → completed |
// failed | canceled | timed_out, persisting every transition with a reason
// and exit code in the repo, keeping stdout and stderr in rotated files,
// and reattaching to containers that outlived a daemon restart.
//
// Containers run locked down: not privileged, all capabilities dropped,
// no-new-privileges, a pids limit, memory without swap, a CPU quota, a
// read-only root with a tmpfs /tmp, inputs bound read-only, /outputs
// writable, an explicit shm size, no network unless the job is
// distributed, and no Docker socket. GPUs go in as device requests by UUID
// (none on mock GPUs, where NVIDIA_VISIBLE_DEVICES still names them).
//
// Imports: p2p/content (inputs and results by CID, through the small
// Content interface) and the moby client; never market or chain.
package jobs
