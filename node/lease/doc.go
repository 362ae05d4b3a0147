// Package lease executes deals: a job that the market matched with a
// provider, run there and paid for as it runs (what Akash calls a lease).
//
// # Two sides and a front
//
// Requester is the side that buys: a job is recorded as queued and
// answered at once; in the background a deal is made through the market
// (asking again while no provider bids, up to timeouts.queue, each asked
// provider's reason in the job's), the channel funded, the job started on
// the provider under the requester's job ID, followed there, paid by
// cumulative vouchers every interval, failed over to another provider
// when its provider vanishes (retry), and rated in the provider's
// reputation (requester*.go, records.go, negotiate.go). Once the final
// voucher reached the provider, both sides sign the deal's receipt
// (market/receipt; receipts.go): the provider first, on the requester's
// account of pay and run time; the requester countersigns only its own
// account, else keeps that account signed alone. A checked job's run
// waits for the verdict (Settle), which its receipt records.
//
// Provider is the side that sells: a start is checked against the deal,
// its terms and the deposit, the job watched (its GPUs' health, its pay),
// its vouchers kept and redeemed (provider*.go, relay.go, redeem.go).
//
// A distributed job is a gang of deals that start together: the
// requester prepares every rank's deal (requester_gang.go), each provider
// checks them (this requester's, this spec's, signed by both) and lets
// exactly their providers into the job's network (p2p/overlay's JobNet,
// keyed by the requester and rank 0's job ID), reaches them and reports
// the path (provider_gang.go); an elastic rank (distributed.min_nodes)
// whose container fails waits for its gang's restart as a new
// generation, checked as a prepare is (provider_regroup.go); the
// requester refuses relayed paths when
// the spec denies relays, then tells every rank to go with MASTER_ADDR
// the rank 0 overlay address. A rank outlives its provider daemon's
// restart: the provider keeps each rank's place on its network
// (provided-nets/ID.json: the network, the rank, its members, the gang's
// group and deals) and, as it starts, rejoins the ranks jobs reattached
// (their holders still running) to their networks, asks its relays to
// serve them again, and reaches the other members (provider_rejoin.go);
// the requester sees the provider silent for less than its grace, which
// is no membership change (no regroup, no failure), and pays it again
// once it answers. A service job's ports reach its requester
// through p2p/overlay (requester_service.go, provider_service.go).
//
// Manager is the thin front the node holds: it builds both sides from one
// Config, runs and closes them together, and routes what the API asks
// (view.go) to this node's own jobs, the requester's market jobs or the
// provider's deals, so the API does not branch on where a job runs.
//
// The sides share only base: the node's services, the voucher interval
// and the goroutines (routines). Each needs the node's services through
// small interfaces (deps.go), so each runs alone in a test against fakes
// (sides_test.go).
//
// # Locks
//
// Requester.mu guards the requester's records and what is in flight;
// Provider.mu the provider's deals and their money check. The two are
// never held together, and neither across a request to a peer, a chain
// call or a container operation; under either only a leaf lock is taken
// (routines.mu, the Vouchers' lock, the jobs manager's lock through Get).
// A channel's funding lock (Requester.funding) is taken with
// Requester.mu released. A method named ...Locked expects its side's
// lock held.
//
// # Wire
//
// Every message between the two daemons is in the table of protocol.go:
// its ID, what travels, and the size and time limits both sides hold it
// to; the message types and the job ID checks are there too.
//
// Lease messages are JSON, where the market's and the overlay's are
// canonical CBOR, and on purpose: the market signs its messages and the
// overlay keys its state by them, so both need one encoding of each value
// (canonical CBOR); no lease message is signed or hashed as bytes. What a
// lease message carries that must verify (a voucher, a deal) is signed
// over its own typed encoding (EIP-712, the market's canonical CBOR),
// never over the JSON around it. JSON keeps the messages the API's and
// the records' own types (api.Job, chain.Voucher), readable in a
// debugger, and every decoder is bounded by the table's size limit and
// fuzzed (fuzz_test.go). The protocol IDs carry the version (/1): a
// change of encoding is a new ID that both sides offer while the old one
// lives.
//
// # Money invariants
//
// Against a hostile peer on either side; each has a test in
// hostile_test.go, terms_test.go or the market's and the CLI's tests.
//
//   - A provider keeps a voucher only if it is signed by the payer, for
//     its wallet, chain and escrow, on the channel of a deal of the
//     sender's, raises the cumulative amount, and fits the channel's
//     deposit on chain; otherwise it is refused with the reason and the
//     voucher held stays (acceptVoucher).
//   - A provider never works more than one voucher interval, plus a
//     delivery margin (a quarter interval, at least 1 s), beyond what its
//     redeemable vouchers cover: each running job on a channel owes
//     price × its run time here on top of what the channel owed before it,
//     checked four times an interval; a job that falls further behind is
//     stopped with the reason (coverage, unpaid, paySlack).
//   - A deal starts at most one job, once, across restarts (claimDeal,
//     started-deals.json). A start on a closing channel is refused; a
//     provider watches its channels' close and redeems at once
//     (checkClosing). A start must keep to the deal's terms: its duration,
//     GPUs, CPU, memory, disk and GPU memory, as offered (withinTerms).
//   - A deal binds the spec by jobs.Spec.Hash: a versioned SHA-256 of
//     the spec's canonical CBOR, independent of Go field order.
//   - A requester pays an ended job the run time it observed itself,
//     from first seeing it running to first seeing it ended, by its own
//     clock, rounded up to the second, within the deal's maximum
//     (billedRun); the provider's own duration counts only inside a gap
//     in the requester's sight (between last seeing it run and seeing it
//     ended), so a provider gains at most that gap by lying, which the
//     requester had prepaid anyway. A status request the provider holds
//     until the state changes (WaitMs) shows starts and ends as they
//     happen; the final voucher goes out at the end.
//   - While a job runs, its vouchers run ahead of its observed time by
//     one interval, growing with its run up to the prepay (Config.Prepay,
//     Record.Prepay; Manager.ahead): a requester that restarts or sleeps
//     for less than that loses nothing, and its provider never works
//     unpaid. What the requester risks is what runs ahead, at most the
//     job's own run so far: vouchers are cumulative and never lowered, so
//     what a job did not use is owed on the channel already and pays for
//     the next jobs with the same provider (payChannel takes the higher of
//     the voucher held and the jobs' exact costs).
//   - A provider whose vouchers stop covering a job pauses it for
//     Config.PauseGrace before it stops it, and resumes it when they
//     cover it again; the paused time is owed by no one (coverage stops at
//     the pause, and the requester bills the run less the pause the
//     provider reports, a claim that only lowers its own pay).
//   - A requester funds a channel for everything owed on it (the voucher
//     signed, or its ended jobs' exact costs if more), what its running
//     jobs and the deals being started on it may still cost, and the new
//     deal, with one interval's margin; the fundings of one channel take
//     turns (fundChannel). A provider counts the starts it is checking
//     against a deposit in the same lock as the check (depositCovers,
//     starting), and refuses for the deposit without a lapse against the
//     requester, freeing the deal's GPUs at once.
//   - A provider relies only on deposits at its own confirmation depth
//     (chain.Client.ConfirmedChannel). During a chain outage it keeps a
//     voucher it cannot check (holdUnchecked) and counts it for at most
//     Config.OutageGrace from the first failed read; it checks it as soon
//     as the chain answers (recheckUnchecked) and stops the job if it
//     exceeds the deposit. So an outage costs a provider at most the
//     grace's run time on vouchers that may prove unfunded.
//   - A deal that holds back a share of the pay (DealTerms.HoldbackBps,
//     a checked job's run; holdback.go) is vouched for its cost less the
//     share, and its provider counts only that as owed (payable), so the
//     provider is never stopped for the share. Its vouchers run only one
//     interval ahead, never a prepay, which would pay the share before
//     the verdict. Settle, once the checker judged the result, pays the
//     share with the channel's next voucher, unless the verdict is
//     outvoted or sampled-mismatch; a verdict is given once. What a
//     provider risks is the share of a run a requester calls outvoted
//     dishonestly: the requester gains that share at most, after paying
//     a tie-breaker, and its verdict stays one-sided (the provider does
//     not sign a receipt of it). What a requester risks beyond the cost
//     less the share is one interval of a run that a cheat ran.
//   - A rank of a distributed job joins a job network only with members
//     the requester funded on chain (gangFunded): a member invented with
//     throwaway keys is refused, here and at a job relay (verifyRelay).
//   - An elastic rank restarts as a new generation of its gang
//     (jobs/regroup/1, provider_regroup.go) only at its own job's
//     requester's word, for a spec with distributed.min_nodes, with
//     members that are deals of that requester for that spec, signed by
//     both, min_nodes to nodes of them, its own deal at its rank, and
//     every other member funded on chain (gangFunded, as at the first
//     start); each generation gets a job network of its own. The rank
//     stays one job under one deal: it is paid as one run, the time it
//     waits for a restart (at most elasticHold) included.
//   - A market job prepares (its GPUs held, unpaid) for at most
//     Config.MaxPrepare.
//   - Job IDs become file names only as 16 lowercase hex digits, and
//     records are written atomically with their errors returned.
//
// # Restarts
//
// A requester's records (remote/ID.json) and a provider's deals
// (provided/ID.json) survive the daemon: a requester restarted mid-job
// dials its provider at the addresses of its last connection (else asks
// the DHT), follows and pays the job again, and counts the provider's
// grace from its own start; a provider restarted mid-job watches the
// containers it left running again, owed from the voucher it holds.
//
// Every goroutine runs under the Manager's context through spawn
// (routines) and is waited for by Close.
//
// lease imports market, jobs, chain, p2p, p2p/content, p2p/overlay, gpu,
// internal/atomicfile (its records) and node/api (the API's types of what
// it reports: job lists, costs, forwards, an offer's request and result);
// never node or net/http (node maps its errors to status codes: ErrInvalid
// is the caller's, jobs.ErrNotFound and jobs.ErrFinished are what they
// say).
package lease
