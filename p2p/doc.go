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
// It may import libp2p and nothing of aixblock's.
package p2p
