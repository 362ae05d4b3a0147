// Package receipt is what an ended deal leaves behind: a receipt signed
// by both sides, the store that keeps receipts, the protocol through
// which peers serve them, and a requester's view of a provider built
// from them.
//
// # Receipts
//
// A Receipt names the network, the deal's ID, the provider and the
// requester (peer IDs and wallets), the metered run time, what the final
// voucher paid (token and base units), the result's CID, the outcome of
// its verification (none, agreed, outvoted, failed, sampled-ok,
// sampled-mismatch), the IDs of the proof-of-GPU records (market/proof)
// that stood behind the provider, and when the deal ended. Every field
// has a bound, and an error names the field out of it.
//
// It travels as canonical CBOR (internal/canon) in an envelope with each
// side's public key and signature over a domain tag of its side and the
// receipt's bytes, within MaxReceiptBytes. The provider signs first
// (Receipt.Sign); the requester checks the receipt against what it saw
// itself and countersigns (Countersign). A receipt one side alone signed
// is a distinct kind (ProviderOnly, RequesterOnly) that only the
// signer's word backs: a requester's record of a job that failed and the
// provider would not sign, say. Decode refuses another encoding, another
// version, a field out of bounds, a key that is not the key of the side
// it stands for (a signature moved to the other side's place), and a
// signature that does not verify; Signed.Check refuses a receipt of
// another network or dated ahead of the reader's clock.
//
// # Store and protocol
//
// A Store keeps one receipt per deal in a JSON file, rewritten
// atomically. A second, different receipt for a deal held is a replay
// (ErrReplay) unless it is stronger: signed by this node, then by a
// peer it dealt with as requester (the other side of a receipt this
// node signed, or StoreConfig.Trusted), then by both sides. The store is bounded per provider and in all; beyond the
// bounds it evicts the weakest first (a stranger's word or the
// provider's own, then receipts strangers signed with the provider,
// then those of peers this node dealt with, then its own), the oldest
// among equals.
//
// /aixblock/<network>/receipts/1 answers a request naming a provider
// with the receipts about it that the answering node signed, newest
// first, at most MaxServed: a provider serves its own, a requester those
// it holds about a provider it dealt with. A Server rate-limits each
// asking peer and all peers together (Limits: 6 at once, then 6 a
// minute, per peer; 60 at once, then 120 a minute, in all), and refuses
// beyond them in the reply, with when to ask again. Fetch checks every
// receipt served: that it verifies, is of the network, not from the
// future, about the provider asked and signed by the peer that served
// it.
//
// A Gatherer fetches, when this node looks at a provider, the receipts
// about it from the provider and from the peers this node dealt with
// (Store.Dealt: the other sides of the receipts it signed, the latest
// first): at most GatherConfig.MaxPeers asked, each within the limits a
// Server answers, a provider at most once every GatherConfig.Every, a
// gathering under way joined rather than repeated. A stranger is never
// asked, so a stranger's receipts reach the store only from the
// provider, where they count for nothing.
//
// # A requester's view
//
// View sums up a provider from the receipts a requester holds (its own,
// and those it fetched from the provider and from peers it dealt with),
// weighted by whose word backs each: the requester that signed it. Its
// own count TrustSelf, a dealt peer's TrustDealt (its newest
// MaxPerRequester about a provider), a stranger's and the provider's own
// nothing; each halves every HalfLife and none counts beyond MaxAge. The
// Summary gives completed (and verified), failed and outvoted deals,
// what was paid per token and by how many distinct payer wallets, a
// score, and the evidence behind it by trust level, counted or not. An
// optional PaidOnChain says what the escrow paid the provider's wallet
// and from how many payers (chain.Paid, which the daemon hands in; it is
// shown, and never ranks).
//
// # What a Sybil provider can and cannot fake
//
// A provider can make any number of peer IDs and wallets for free, and
// deal with itself through them. What that buys it:
//
//   - Receipts signed by its own requesters, as many as it likes, at no
//     cost but signing: a store keeps them, within its bounds, and a
//     View counts them as strangers' evidence, for nothing. They evict
//     other strangers' receipts about it, never receipts of peers the
//     viewer dealt with or its own.
//   - Nothing from the viewer's own receipts: those carry the viewer's
//     signature. A receipt from a peer the viewer dealt with carries
//     that peer's signature, which a Sybil cannot make; a dealt peer
//     that colludes lends at most MaxPerRequester receipts.
//   - To enter a viewer's trust, a Sybil must deal with it: as a
//     provider, the viewer's own receipts then say what it did; as a
//     requester of the viewer, it pays the viewer's price for the time
//     it buys. Either way its receipts then count at TrustDealt, and its
//     MaxPerRequester newest only.
//   - On chain, payments from its own wallets to itself are real
//     transactions: each costs gas on both sides (a deposit, a redeem)
//     and, for a distinct payer, a funded wallet, and the escrow holds
//     the money for the challenge period. PaidOnChain counts payers, not
//     amounts, for that reason: the amount comes back to the Sybil, the
//     gas per payer does not. It proves that money moved, not that work
//     was done.
//   - It cannot hide a failure a requester recorded: the requester signs
//     its receipt alone when the provider will not, and serves it; only
//     a stronger receipt for the same deal (the viewer's own, or one
//     both sides signed) replaces it in the viewer's store.
//
// What receipts cannot prove: that the run time and result are true
// beyond what both sides agreed (a requester that colludes with a
// provider can sign anything; hence the trust weights); and that a deal
// ID names a real deal (the receipt does not carry the deal's wallet
// signatures, so the deal's terms are not checked against it). A
// receipt evicted from a bounded store is forgotten, with the replay
// check on its deal.
//
// Imports: p2p, internal/canon, internal/atomicfile, libp2p, go-cid and
// x/time/rate; never market itself, market/proof (a record's ID is a
// string here), jobs, chain or the daemon (node/arch_test.go).
package receipt
