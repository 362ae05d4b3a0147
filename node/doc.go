// Package node is the daemon: its repo directory (identity, config, API
// token, lock), the wiring of every service in one readable New and Run, the
// local HTTP API with its client, metrics, and the web dashboard (plain
// HTML, CSS and JavaScript in dashboard/, embedded, served on the API
// address; a browser signs in with a one-time code to a session of its own,
// never the token: see dashSessions).
//
// The execution of deals (a market job on either side, its payment, the
// gang of a distributed job, a service's forwarded ports) lives in
// node/lease; node hands it its services and maps its errors to HTTP.
//
// Services start in order and stop in reverse. No other package imports
// node; the CLI talks to a running daemon only through Client.
package node

// Version is the daemon's version, set at build time with
// -ldflags "-X github.com/aixblock/aixblock/node.Version=...".
var Version = "0.1.0-dev"
