// Package market is how a job finds a provider, with no central server.
//
// A provider signs a ProviderAdvert (its free healthy GPUs by class, host
// resources, prices, limits) with its peer key and stores it in the DHT
// under /aixblock-provider/<peer-id>; it announces itself as a DHT provider
// of one key per GPU class it has, plus any-gpu and cpu, and republishes
// when health or allocation change and on a timer. A requester finds
// providers by class, sends a signed JobOffer straight to the best few and
// gossips it on /aixblock/<network>/offers/1 for the rest; providers whose
// bid engine accepts it reserve GPUs and answer with a Bid over a direct
// stream. A provider asked directly that does not bid answers with a
// signed NoBid saying why (price floor, free GPUs, CPU, memory, disk,
// image, token, duration, reservation limit), and the requester names
// each reason in its error; it reports a GPU class nobody has itself,
// with the classes it knows. The requester awards the best bid (price,
// then reputation, then latency) and both sides sign the Deal with their
// wallets (EIP-712, through the DealSigner that package chain implements
// and node hands in).
//
// What a hostile peer can make a provider do is bounded: a reservation
// lasts Config.ReserveFor at most, whatever the offer's deadline, and is
// freed when it lapses unawarded; one requester peer holds at most
// MaxReservations unawarded ones, and one whose reservations keep lapsing
// gets no bids for a while. A provider bids back on a gossiped offer only
// to the requester's peer ID (an existing connection or the DHT's
// addresses for it), never to addresses the offer names, so an offer
// cannot make the network dial a victim.
//
// Everything from the network is size-limited, decoded from canonical CBOR
// and signature-checked before it changes any state; IDs are hashes of the
// canonical bytes.
//
// Imports: p2p, gpu's types and internal/atomicfile (the reputation
// file); never go-ethereum or Docker.
package market
