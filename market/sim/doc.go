// Package sim runs the market, DHT and gossip of N daemons in one
// process, in virtual time, on two tiers. On the full tier each node is
// the real p2p.Node (kad-dht, GossipSub) and market.Market on a go-libp2p
// mocknet host, all inside a testing/synctest bubble, whose clock moves
// only when every goroutine waits. The figures are then the protocol's, not this machine's CPU.
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
//     dial to them, or to a node that left, hangs for 5 s, or for the
//     dial peer timeout on its context when shorter (as libp2p's swarm).
//     They advertise a relay's circuit address (relay.go), as a daemon's
//     relay client does, in their DHT records.
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
// Memory is the limit of the full tier: every node is a whole libp2p
// host, and its cost goes with its connections (GossipSub keeps a stream
// and three goroutines per connected peer, each mocknet stream an
// io.Pipe each way; the daemon's connection manager lets a node hold up
// to 192): 3.2 MiB of heap, 2.8 MiB of stacks and 577 goroutines a node
// at 100 nodes (9 MiB of the process a node), 6.3 MiB, 5.4 MiB and 917
// at 300 (17 MiB), so 1,000 nodes need over 20 GiB. Only fewer
// connections would cut that, which would change what is measured.
//
// The light tier (RunLight) is what reaches 1,000 and 10,000 nodes: a
// discrete-event model of the same network and protocols, a queue of
// callbacks in virtual time, with no libp2p and no goroutines. It keeps:
//
//   - The links, NAT, dial timeout and connection cost above, and the
//     daemon's connection manager (64/192, a minute's grace, least
//     recently used first).
//   - Kademlia as kad-dht runs it: k=20 buckets over 256-bit keys,
//     iterative lookups with alpha=10 in flight until the beta=3 closest
//     answered, then the follow-up to the rest of the k closest; peers
//     that do not answer leave the asker's table; provider records at
//     the k closest that answered the provider's lookup, returned by
//     each holder in random order (kad-dht shuffles them). Tables start
//     as a refresh leaves them (public nodes; a node behind NAT enters
//     the tables of the peers it dialled).
//   - GossipSub delivery: flood publishing to the publisher's
//     connections, then a mesh of D=6 (4 to 12) forwarded on first
//     receipt; a peer left under 4 grafts more.
//   - The market's negotiation with its defaults: the requester's advert
//     cache (cheapest first, refreshed from the DHT from a requester's
//     second negotiation on, at most every 30 s: a lookup for 10
//     providers, then a value search for each advert that ends when two
//     holders answered), a lookup for up to the fanout (5) within half
//     the bid window (the whole window when it found none), providers
//     that can be dialled before those behind NAT (not connected to the
//     requester; these fill the room left, and those found in the window
//     wait for the lookup's end), in the cache too, the direct offer, the
//     lookup going on in the window with the providers it finds asked
//     directly too, gossip only when the DHT ran dry short of the fanout
//     or named none (providers who hear it bid back), the bid window
//     (1 s, or 3 bids, or, the lookup ended and no gossip, every
//     provider asked answered: once a bid came, every one not behind
//     NAT), the award to the cheapest bid with its 3 s timeout,
//     releases to the losers and to late bids; the provider's bid
//     decision (a free GPU reserved for 10 s) and its republishing of
//     the advert (not its class records) 2 s after the first deal or
//     release of a burst. The market's DHT lookups dial with its 1.5 s
//     timeout (market.LookupContext), and a lookup ends, its requests in
//     flight cancelled, when it has the providers asked for or its
//     follow-up is done, as kad-dht's.
//
// It leaves out what the full tier runs and it only models: the real
// market and p2p code (no message is encoded, signed or checked; the
// model follows market's defaults, so a change to market is not seen
// here until the model follows it), GossipSub's heartbeats, IHAVE gossip
// and scoring, kad-dht's table refresh after the start, loss, relays,
// bandwidth and CPU. CPU may be put back (Config.Cost, make bench-scale's
// SCALE_PROC_MS and SCALE_CORES): each market request then waits for a
// free CPU, the node's own or one of a few all nodes share (daemons on
// one machine), and takes a fixed time of it, to hold the model against
// make bench-scale-real, which measures that time. Its figures agree with the full tier's at 100 and
// 300 nodes within about a third (docs/operators.md gives both).
//
// make bench-scale runs TestScale.
package sim
