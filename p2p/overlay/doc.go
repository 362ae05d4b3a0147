// Package overlay holds jobs' private networks on libp2p: the job network
// of a distributed job's ranks, and the forwarding of a service job's
// ports to its requester.
//
// The job network (JobNet, /aixblock/<network>/jobnet/1):
//
//   - Each rank has a network namespace of its own (a holder container's,
//     made by jobs). Join makes a TUN device in the daemon's namespace,
//     moves it into the rank's (named IfName, MTU 65000, the rank's
//     address RankAddr(r) = 10.77.0.(r+1) in Prefix, loopback up) and
//     keeps its file: the rank's only route is the job's subnet. The
//     device is persistent: it outlives the daemon (its lifetime is the
//     namespace's), so a daemon that restarts attaches to it again
//     (Rejoin: from a thread inside the namespace, TUNSETIFF by name with
//     the same flags, after checking it is a TUN device holding the
//     rank's address; Rejoin never makes one) and the rank's TCP
//     connections see an outage that their retransmissions ride out,
//     not a reset. The other members' senders keep the network: a
//     packet for an absent member is dropped, a stream is opened again
//     on the next packets (the same peer, on its new connection), and a
//     connection on which a batch timed out is closed when the member
//     has another. Only the member's own peer ID may rejoin its rank. The
//     device speaks virtio-net headers with checksum offload (vnet.go):
//     the rank's kernel leaves TCP and UDP checksums to the daemon, which
//     fills them in before a packet leaves, and a member's packet is
//     written to the rank marked as checked (the stream it crossed is
//     authenticated). The header never crosses the wire.
//   - Every packet the rank sends is read here. One whose source is not
//     the rank's own address, or whose destination is not another rank
//     of the job, is dropped (counted); the rest go to the member that
//     hosts the destination rank, framed (2-byte length, packet) on one
//     stream per member, or straight to a local rank's device. A packet
//     of 8 KiB or more is handed to the stream as it is; smaller ones
//     are gathered into one write, flushed when the queue runs dry.
//   - A member's queue is bounded: 1024 packets and 4 MiB of buffers,
//     and all members' queues of one network 32 MiB together. A packet
//     waits in a buffer of its own size class (512 B, 4 KiB, 16 KiB,
//     64 KiB), not a 64 KiB one whatever its size. A full queue drops, as
//     a router does. A member that does not take a batch within 10 s
//     loses its stream (the next packet opens another); a stream with
//     nothing to send for a minute is closed.
//   - A member's stream opens with a header (version 1, the network ID)
//     read within 3 s; a network this daemon does not have, or a peer
//     that is not one of its members, gets a reset. Each packet received
//     must come from a rank that member hosts and go to a rank here.
//     A member has one inbound stream per network: a newer one replaces
//     (resets) the older. Nothing is buffered for it beyond the packet
//     being read, and a stream that carries no packet for two minutes is
//     reset.
//   - When the network's last local rank leaves (Rank.Close, which
//     removes the rank's device) or the JobNet closes, everything of it
//     ends: streams both ways, the senders' goroutines, and what they had
//     queued; a JobNet that closes (the daemon going away) leaves its
//     ranks' devices for the next daemon, and they go with their
//     namespaces. A member that never reads pins nothing past the job.
//   - Reach connects to every member before the ranks start and reports
//     the path (direct or relayed), giving hole punching its chance; a
//     stream on a relayed connection moves once a direct one exists.
//     Stat is the network's paths and traffic.
//
// Ports:
//
//   - On the provider, Server answers /aixblock/<network>/port/1. A stream
//     opens with a small CBOR Header (version, job ID, port), at most
//     MaxHeaderBytes; the Authorizer the node hands in decides whether the
//     peer may reach that port of that job (the job's requester, a port its
//     spec declares) and returns the Dialer for it. A refused stream gets
//     one line naming why and is closed; an accepted one gets "ok" and
//     then carries bytes both ways until either side ends.
//   - DialPID connects to 127.0.0.1:PORT inside a container's network
//     namespace. Service containers run with network mode none, so the
//     provider publishes nothing on its own interfaces: the only way to a
//     service's port is a socket the daemon makes in the container's
//     namespace, for a stream the Authorizer let through.
//   - On the requester, Forward listens on a local TCP address (127.0.0.1
//     unless told otherwise) and carries each connection it accepts over
//     its own stream to the provider, as `docker run -p` or `kubectl
//     port-forward` would.
//
// Every peer is a stranger: the header is size-limited and strictly
// decoded before anything else is read, it must arrive within a timeout,
// and the refusal reply is a bounded single line.
//
// It imports p2p, libp2p and vishvananda/netns and netlink; never node,
// jobs or market (node/lease wires the Authorizer and the job networks'
// members from its deals and the jobs Manager).
package overlay
