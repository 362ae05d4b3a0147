// Package market is how a job finds a provider, with no central server.
//
// A provider signs a ProviderAdvert (its free healthy GPUs by class, host
// resources, prices, limits) with its peer key and stores it in the DHT
// under /aixblock-provider/<peer-id>; it announces itself as a DHT provider
// of one key per GPU class it has, plus any-gpu and cpu, and republishes
// when health changes, on a timer, and (the advert alone) shortly after a
// burst of allocation changes. A requester finds providers by class, sends
// a signed JobOffer straight to the best few, those it can dial before
// those behind NAT (a relay's circuit address in their records, not
// connected here), and to those the DHT names later in the bid window,
// and, when the DHT holds fewer than its fanout
// or named none in half the window, gossips it on
// /aixblock/<network>/offers/1 for the rest (a copy to every node per
// deal would grow with the network); providers whose
// bid engine accepts it reserve GPUs and answer with a Bid over a direct
// stream. A provider asked directly that does not bid answers with a
// signed NoBid saying why (price floor, free GPUs, CPU, memory, disk,
// image, token, duration, reservation limit, funds), and the requester
// names each reason in its error; it reports a GPU class nobody has
// itself, with the classes it knows. The window ends after Config.Enough
// bids, or when every provider asked answered (the lookup done, no gossip
// bids invited); once a bid came, it does not wait for providers behind
// NAT, which answer through a relay late if at all (with no other bid,
// one of them still wins). The requester awards the best bid (price,
// then reputation, then latency) and both sides sign the Deal with their
// wallets (EIP-712, through the DealSigner that package chain implements
// and node hands in).
//
// What a hostile peer can make a provider do is bounded. A reservation
// lasts Config.ReserveFor at most, whatever the offer's deadline, and is
// freed when it lapses unawarded. A peer ID costs nothing, so a
// reservation costs what a fresh identity does not have: the offer
// carries its wallet's signature (WalletSig, deal terms that name the
// offer and no provider, which commit the wallet to nothing), so a
// requester cannot name a wallet it does not control; and, with
// Config.Funds, the provider asks the chain, after the cheap checks and
// before reserving, whether that wallet can put the deal's maximum cost
// behind a deal here (its channel to this provider plus its balance).
// Answers are cached briefly and at most a few checks run at once, so a
// stream of offers from fresh wallets is not a stream of RPC calls. The
// limits then follow the wallet as well as the peer ID: each holds at
// most MaxReservations unawarded reservations (awarded deals waiting to
// start count too), and one whose reservations keep lapsing gets no bids
// for a while; all requesters together hold at most ReserveBudget.
// Reserving only at award was the other way to make holds cost something,
// but a bid names its GPUs and the requester signs them in the deal: two
// requesters bidding at once would be quoted the same GPUs, and one
// award would fail. What is left: a requester with many funded wallets
// can still hold GPUs, MaxLapses times per wallet per LapseWindow, and no
// more than ReserveBudget reservations at once.
//
// An offer refused by the limits is not remembered; the IDs of offers
// judged are kept, so a copy is not judged twice, in a store of at most
// 4096, for an hour at most.
//
// GPUs taken are those reserved or allocated here and those Config.Busy
// names: the jobs running on the node, which the daemon reattaches after
// a restart while the market's holds, kept in memory, are gone. With
// Busy set, every GPU counts as taken until Run starts, so a restarted
// provider neither advertises nor bids a GPU a reattached job holds.
//
// A provider may require a disk bound for market jobs
// (Config.RequireDiskMiB: an offer without disk_mib is refused, naming
// the field) or give one to jobs that leave it out
// (Config.DefaultDiskMiB, told to the daemon by DiskBound).
//
// A provider bids back on a gossiped offer only to the requester's peer
// ID (an existing connection or the DHT's addresses for it), never to
// addresses the offer names, so an offer cannot make the network dial a
// victim.
//
// Everything from the network is size-limited, decoded from canonical CBOR
// and signature-checked before it changes any state; IDs are hashes of the
// canonical bytes.
//
// Imports: p2p, gpu's types and internal/atomicfile (the reputation
// file); never go-ethereum or Docker.
package market
