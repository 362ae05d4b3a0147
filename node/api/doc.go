// Package api is the daemon's local HTTP API as its callers see it: the
// request and response types of every route (their JSON is the wire
// format) and Client, which speaks them. The daemon (package node) serves
// these types, node/lease fills the ones that report deals and their
// costs, and the CLI sends and prints them.
//
// Types of the packages below (a job's spec, a deal, a GPU, a channel)
// appear as themselves: a caller imports jobs, market, gpu, chain or
// p2p/content to name them, as the daemon does. A job appears as Job: the
// jobs.Job of the node that runs it, with what a market job's lease adds
// (its provider, its job network, the states only a requester's jobs
// have), in one flat JSON object.
//
// Imports: jobs, market, gpu, chain and p2p/content for their types, and
// the standard library; never node, node/lease or anything else of the
// daemon's wiring (node/arch_test.go checks it).
package api
