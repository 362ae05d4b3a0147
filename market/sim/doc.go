// Package sim runs the market, DHT and gossip of N daemons in one
// process, in virtual time: each node is the real p2p.Node (kad-dht,
// GossipSub) and market.Market on a go-libp2p mocknet host, all inside a
// testing/synctest bubble, whose clock moves only when every goroutine
// waits. The figures are then the protocol's, not this machine's CPU.
//
// Nothing of mocknet, kad-dht, GossipSub or the market escapes the
// bubble: their timers and goroutines all start inside it. What the
// harness adds to mocknet:
//
//   - Links are made on the first dial (Net.reach), each with the round
//     trip of its two nodes' regions (20-300 ms, a tenth of jitter):
//     mocknet's LinkAll takes memory by the square of the nodes.
//   - A new connection costs two round trips (mocknet connects at once).
//   - Nodes behind NAT are reached only over connections they opened; a
//     dial to them, or to a node that left, hangs for 5 s.
//   - Loss: a message lost on its first try is sent again after a
//     retransmission timeout, and what follows it on its stream waits.
//   - Each host gets the daemon's connection manager (64/192): mocknet's
//     hosts keep every connection they ever made.
//   - Mocknet lets a stream open on a connection that is closing and
//     never resets it, so both ends wait for ever (a leak in real time,
//     a deadlock panic at the end of a bubble); the streams a host opened
//     and never closed are reset when the world closes.
//
// Left out: bandwidth, relays (a node behind NAT is reached only over
// its own connections), CPU time, and the chain (deals are signed by a
// stand-in for the wallet).
//
// Memory is the limit: every node is a whole libp2p host, and at 1,000
// nodes the process passed 10 GiB. make bench-scale runs TestScale.
package sim
