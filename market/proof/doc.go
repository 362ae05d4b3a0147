// Package proof is proof of GPU between peers: the compute challenge of
// gpu/challenge run over libp2p between a verifier and a provider, and
// the signed records of its verdicts that providers keep and serve and
// requesters weigh.
//
// # The challenge protocol
//
// /aixblock/<network>/proof/challenge/1 carries gpu/challenge's messages
// in their order, one p2p.Request per step, each request and reply one
// canonical CBOR frame:
//
//  1. challenge: the Challenge (a fresh seed, n, the GPU count, the
//     precision) and the challenged GPUs' UUIDs → the Commitment.
//  2. query: the Query → the Answer (y).
//  3. open: the rows, in batches that fit 16 MiB → their Openings.
//  4. record: the verifier's signed Record → nothing; it closes the
//     challenge on the provider's side, which keeps the record.
//
// Later steps name the challenge by its seed. The provider holds one open
// challenge per verifier and takes each step only in its turn; a
// challenge with no step for Provider's Idle (two minutes) is closed.
//
// The verifier connects first, so dialing is not timed; it reads its own
// clock before sending the challenge and when the commitment arrives:
// nothing is taken off. The envelope credits the round trip, which the
// verifier takes from the peerstore's latency or one ping (a provider can
// only inflate it, and by at most challenge.MaxRTT). It computes its
// expected answers (challenge.Verifier.Prepare) while the provider
// computes. Then it checks the commitment against its challenge, its time
// against the claimed class's envelope, y, and k rows.
//
// Verify returns the signed record and the reason a challenge failed,
// wrapping ErrTimeout (no commitment by the end of the class's window
// plus the round trip, or a later step past its time), ErrRefused,
// ErrBrokeOff, or gpu/challenge's ErrEnvelope (too fast or too slow for
// the class), ErrNotCommitted, ErrWrongRow, ErrWrongY, ErrReplay,
// ErrProtocol. What is no verdict on the provider leaves no record: a
// claim that cannot be checked (ErrClaim: an unknown class, an n that
// does not fit it), an unreachable provider (ErrUnreachable), a refusal
// for later (ErrRateLimited, ErrBusy), the caller's context ending.
//
// The provider side runs a Workload, which turns a challenge into a
// Prover on exactly the GPUs named. The daemon's runs it as a job on
// those GPUs; CPU runs gpu/challenge's in-process prover, for tests and
// CPU-only providers, and can pass only a mock class's envelope.
//
// # Payment and rate limits
//
// Challenges are free, and rate-limited. A verifier challenges a
// provider before it deals with it: asking it to pay first would have it
// pay an unverified provider, the very risk the challenge removes, and
// would tie verification to a funded channel that a new requester, or a
// testnet peer, may not have. What a free challenge costs a provider is
// bounded instead: a workload runs it only on idle GPUs (a leased GPU is
// ErrBusy: "later", no verdict), for under a minute on a real card, and
// Limits cap how often: per verifier one open challenge and 3 at once,
// then 3 an hour; in all 6 at once, then 12 an hour, one computing at a
// time. At the defaults a crowd of fresh peer IDs takes at most 12
// challenges an hour, some 6 minutes of one idle GPU. The daemon may
// tighten the rule through ProviderConfig.Admit (for example, only peers
// that sent it an offer); a refusal there is final and recorded.
//
// # Verification records
//
// A Record is a verdict signed with the verifier's libp2p key: network,
// verifier and its public key, provider, GPU UUIDs, class, n, precision,
// rows opened, the seed's SHA-256, the time, the seconds from seed to
// commitment (with the round trip credited, and the TFLOPS and working
// set they imply), and pass, or fail with a reason and the verifier's
// error. It travels as canonical CBOR with a signature over a domain tag
// and the record, within MaxRecordBytes. DecodeRecord refuses another
// encoding, another version, an invalid field, a key that is not the
// named verifier's, a signature that does not verify; Check refuses a
// record of another network, about another provider than the one asked
// (a record replayed for someone else), or from the future.
//
// The provider keeps the records sent to it about itself in a Store and
// serves them on /aixblock/<network>/proof/records/1 (FetchRecords); a
// requester keeps those it made or fetched. A Store is bounded (per
// provider and in all, evicting others' oldest records before its own),
// checks what it takes, and rewrites its file atomically on each change.
// Status weighs, for one provider, each signer's newest record within
// MaxAge by the signer's trust (Trust: this node first, then peers it
// has dealt with, strangers not at all) halved every HalfLife of its
// age: "verified by N, last at T", "failed: why", or "unverified".
//
// Imports: p2p, gpu/challenge, internal/atomicfile and libp2p; never
// gpu's NVML, market, jobs, chain or the daemon (node/arch_test.go).
package proof
