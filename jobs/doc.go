// Package jobs runs a job's container on this node: the YAML spec and its
// validation, a small container Runtime interface with a Docker
// implementation (github.com/moby/moby/client), and a Manager that takes a
// job through pending → preparing → running → uploading → completed |
// failed | canceled | timed_out, persisting every transition with a reason
// and exit code in the repo, keeping stdout and stderr in rotated files,
// and reattaching to containers that outlived a daemon restart.
//
// # Service jobs
//
// A spec with kind: service runs until it is canceled or its deal ends
// (the lease layer enforces the deal; only an explicit timeouts.execution
// stops it here). It declares its ports (ports: [{port: 8080, name:
// http}]); a container that exits non-zero is started again per restart
// (on-failure, at most 3 times unless max says otherwise; never), each
// restart recorded as a running transition with its reason and counted in
// Job.Restarts. With ready: {http: /healthz} or {tcp: true} the job is
// running but not Ready until the check passes, and again after each
// restart. The daemon reads an HTTP check's answer, not the container:
// its status line and headers, 4 KiB at most, within 10 s (or
// ready.timeout if shorter), never its body, so a service that answers
// without end costs the provider nothing but that. A service's container
// has network mode none like any one-node job: its ports are reached only through Config.DialPort, a socket made
// in the container's network namespace by the container's PID
// (Manager.PortDialer, Manager.ContainerPID), which the node carries over
// libp2p to the job's requester (p2p/overlay). The provider publishes
// nothing on its own interfaces.
//
// Containers run locked down: not privileged, all capabilities dropped,
// no-new-privileges, user nobody (65534), a pids limit, memory without
// swap, a CPU quota, a read-only root with a 64 MiB tmpfs /tmp, inputs
// bound read-only, /outputs writable, an explicit shm size, no network
// unless the job is distributed, and no Docker socket. GPUs go in as
// device requests by UUID (none on mock GPUs, where NVIDIA_VISIBLE_DEVICES
// still names them).
//
// # Threat model
//
// A provider's host holds more than the jobs it runs: files, keys, other
// tenants' images, local services. Three parties touch it through this
// package, and each boundary below is enforced where it says.
//
// A job (the code in the container) reaches its container and nothing of
// the host:
//
//   - Files: its image, its inputs (read-only) and its /outputs. Each
//     input is fetched into the job's directory and checked after the
//     fetch and before the mount (checkInput): its root must be a plain
//     file or directory whose resolved path is inside the job's
//     directory, so a UnixFS symlink root, which Docker would follow on
//     the host, fails the job naming the input. Symlinks inside an input
//     directory are kept; they resolve in the container's mount
//     namespace, where a host path names nothing of the host. What the
//     job leaves in /outputs is added by content.Add, which stores a
//     symlink as a symlink and never reads its target; the cleanup's
//     RemoveAll does not follow links either.
//   - Disk: with resources.disk_mib, inputs and /outputs live on a
//     filesystem of that size of the job's own (disk.go: a sparse ext4
//     image, loop-mounted nosuid,nodev), so the kernel refuses the write
//     past the limit and the job fails with "disk_mib N exceeded". A
//     provider that cannot mount (not root, no loop devices) refuses jobs
//     that set disk_mib. Without disk_mib nothing bounds inputs and
//     outputs but the provider's disk; /tmp is bounded by its tmpfs, an
//     ipfs:// tarball by Config.MaxImageMiB.
//   - Env: keys under NVIDIA_, CUDA_, AIXBLOCK_, PET_, MASTER_,
//     TORCHELASTIC_ and the launcher's names (RANK, WORLD_SIZE, TF_CONFIG,
//     ...) are refused in specs (reservedEnv); the daemon sets
//     NVIDIA_VISIBLE_DEVICES (to "none" on a CPU job, overriding an
//     image's ENV) and AIXBLOCK_JOB_ID last, replacing any earlier entry.
//   - GPUs: only the UUIDs its deal gave, as device requests; with
//     NVIDIA_VISIBLE_DEVICES in the daemon's hands, a provider whose
//     default runtime is nvidia hands out no others.
//   - Network: none (loopback only) for a one-node job, a service too. A
//     distributed rank joins a holder container's namespace (hold.go), in
//     which the node places the job network's device before the rank
//     starts (SubmitOptions.JoinNetwork): it reaches its job's other ranks
//     and nothing else. The device outlives the daemon, so a rank whose
//     holder still runs after a restart is followed again and waits for
//     the node to rejoin its network (RejoinNetwork, rejoin.go) within
//     Config.RejoinWindow; one whose holder ended, or not rejoined in
//     time, fails. The host's network (SubmitOptions.HostNetwork) is
//     only for a requester the provider lists as trusted with it: such a
//     rank can reach the host's local services.
//   - Namespaces by PID (pin.go): a port dial and a job network's join
//     reach a container's namespace through its first process, and a
//     PID read from the engine may name another process (the host's)
//     once the container's has exited and the number is reused. The
//     daemon holds the process by a pidfd, asks the engine again, and
//     goes on only if the engine still gives that PID and the held
//     process has not exited; the join gets the namespace as the
//     daemon's descriptor (/proc/self/fd/N), opened while the process
//     was held, and a dial during which the process exited is closed
//     unused. What remains: DialPort takes a PID, so the socket is made
//     by /proc/PID a moment after the check (a reuse in between is
//     caught after the connect, which is then closed); and the check
//     trusts the engine's second answer to be current. Needs Linux 5.3
//     (pidfd_open); without it ports and job networks are refused.
//   - Kernel: no capabilities, no-new-privileges, not root in the
//     container, pids and memory limits; the engine's seccomp and
//     AppArmor defaults apply.
//
// A requester (who sends a spec and pays for it) chooses what runs, not
// how: ParseSpec reads YAML strictly (privileged, volumes, devices, mounts
// and every other unknown field are refused), paths must lie under
// /inputs and /outputs, inputs are CIDs. Images:
//
//   - ipfs://CID: the tarball's manifest.json is read by the daemon
//     (imagetar.go): one image only, its config and every layer present
//     as files, as many layers as the config lists, each uncompressed
//     layer matching its diff ID, no foreign-layer URLs, no sparse
//     entries, at most MaxImageMiB, and the CID must be a file (a symlink
//     would have the engine read a host file). The engine gets a tarball
//     the daemon wrote: those files and a manifest whose one tag is
//     aixblock-ipfs/<CIDv1>:latest. No tag of another image moves, two
//     tarballs claiming one tag do not collide, and the job runs by image
//     ID. Specs may not name aixblock-ipfs/ images directly.
//   - A name: an image already in the engine, or pulled from its
//     registry unless Config.NoPull. Any image in the engine can be
//     named, so an operator who keeps private images there limits what
//     jobs may name (market.accepted_images). The name is resolved to an
//     ID once, at prepare.
//   - A pull never goes to the provider's own machine or network
//     (registry.go, checkPull): before the engine is asked, the
//     registry host the name carries is refused when it is localhost
//     (or *.localhost), a number some resolver would read as an address
//     (127.1, 2130706433), or an address, or a name resolving at any of
//     its addresses, that is loopback, link-local, private (with
//     carrier-grade NAT), unspecified, multicast or reserved, IPv4
//     carried in IPv6 (mapped, NAT64, 6to4) judged as IPv4. The
//     operator lifts this for registries it names
//     (Config.AllowRegistries; none by default). Docker Hub names
//     carry no registry host and are pulled as the engine is set up.
//     A failed pull's reason says only which registry did not give the
//     image; the engine's message, which quotes the far side's answer
//     (the start of a response body, a refused connection), goes to the
//     provider's log. Left open: the engine resolves the name again
//     itself, so a name whose DNS answers change between the two
//     lookups (rebinding), or a public registry that redirects the
//     engine to an internal address, still reaches it; the requester
//     learns no more than that the pull failed.
//
// A third-party peer (any other node) cannot start a job here: the node
// submits jobs only for deals it accepted (node/lease). What it can send
// is content, fetched by CID and checked block by block by p2p/content,
// whose limits bound how much is written. The "go" request that starts a
// distributed rank comes from the job's requester only, and its env
// crosses into the container only through ValidateGoEnv: the launcher's
// own keys, each once, bounded, with no NUL or line break; anything else
// fails the job.
//
// Imports: p2p/content (inputs and results by CID, through the small
// Content interface), internal/atomicfile (its records) and the moby
// client; never market or chain.
package jobs
