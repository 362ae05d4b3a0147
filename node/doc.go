// Package node is the daemon: its repo directory (identity, config, API
// token, lock), the wiring of every service in one readable New and Run, the
// handlers of the local HTTP API (its types and client are node/api),
// metrics, and the web dashboard (plain HTML, CSS and JavaScript in
// dashboard/, embedded, served on the API address; a browser signs in with
// a one-time code to a session of its own, never the token: see
// dashSessions).
//
// The execution of deals (a market job on either side, its payment, the
// gang of a distributed job, a service's forwarded ports) lives in
// node/lease; node hands it its services and maps its errors to HTTP.
//
// Services start in order and stop in reverse. No other package imports
// node but the CLI, which opens and starts a repo's daemon through it and
// talks to a running one only through node/api's Client (NewClient finds
// it from the repo).
package node

// Version is the daemon's version, set at build time with
// -ldflags "-X github.com/aixblock/aixblock/node.Version=...".
var Version = "0.1.0-dev"
