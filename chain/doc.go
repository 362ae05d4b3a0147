// Package chain moves money through the escrow on any EVM chain: the wallet
// (a go-ethereum keystore in the repo), a client over JSON-RPC (deposit,
// redeem, startClose, withdraw, channel reads and an event watcher), a
// sender with a local nonce counter, fee bumping for stuck transactions and
// a configurable number of confirmations, EIP-712 vouchers compatible with
// eth_signTypedData_v4, and an embedded dev chain (go-ethereum with a
// simulated beacon, as `geth --dev`) with the contracts deployed and
// accounts funded.
//
// Vouchers from the network are untrusted: DecodeVoucher bounds the size,
// parses strict JSON and checks every field and the signature before
// anything else looks at them.
//
// Imports: contracts (the generated bindings) and go-ethereum.
package chain
