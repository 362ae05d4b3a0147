// Package overlay holds a job's private network on libp2p. Today that is
// the forwarding of a service job's ports to its requester:
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
// It imports p2p, libp2p and vishvananda/netns; never node, jobs or market
// (the node wires the Authorizer from its deals and the jobs Manager).
package overlay
