// Package p2p holds the node's libp2p side: the host (TCP and QUIC, Noise and
// TLS, yamux, NAT traversal), the Kademlia DHT, GossipSub, and a helper for
// request/response stream protocols.
//
// Everything a node speaks is namespaced by its network name: the DHT runs
// under the protocol prefix /aixblock/<network>, GossipSub's own protocol and
// every topic live under /aixblock/<network>/, and so do stream protocols.
// Two networks can share a machine, or even a connection, without ever
// exchanging a record or a message.
//
// A node with Config.JobRelay is a job relay: a circuit relay for the
// peers of the live job networks it serves (AllowRelay, or a member's
// RequestRelay that the daemon's RelayVerifier accepts) and no one else,
// each peer within a byte budget and each job network's grant within a
// duration; its circuits are limited connections, which only the job
// network and libp2p's own hole punching and identify use. The rules are
// in relay.go.
//
// Every stream protocol a node serves is set with HandleStream (Handle
// for request/response ones): its streams are in the resource manager's
// service named after the protocol (ServiceName), with a memory limit of
// its own that the handlers' buffers count against (Reserve). A request
// of Handle holds its size there while it is served (StreamLimits.Memory:
// 64 requests of MaxRequest by default, at least 1 MiB); the overlay's
// port and job network protocols hold their copy and packet buffers. The
// services' other limits, and every per-peer limit, are libp2p's scaled
// defaults. The libraries' protocols (identify, the relay, the DHT,
// GossipSub, bitswap) keep the scopes their libraries give them.
//
// TLS is libp2p's, corked (cork.go): the records of one write (a yamux
// frame of up to 64 KiB is four) leave in one system call, not one each.
// The bytes on the wire are the same, so peers without it are unaffected.
//
// It may import libp2p and nothing of aixblock's.
package p2p
