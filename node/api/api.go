package api

// IDInfo is GET /v1/id.
type IDInfo struct {
	PeerID  string   `json:"peer_id"`
	Addrs   []string `json:"addrs"`
	Network string   `json:"network"`
	Version string   `json:"version"`
	// Gateway is the trustless gateway's base URL; empty when off.
	Gateway string `json:"gateway,omitempty"`
	// Wallet is the node's Ethereum address.
	Wallet string `json:"wallet"`
}

// PeerInfo is one entry of GET /v1/peers.
type PeerInfo struct {
	PeerID    string `json:"peer_id"`
	Addr      string `json:"addr"`
	Direction string `json:"direction"`
	LatencyMS int64  `json:"latency_ms,omitempty"`
}

// StatusInfo is GET /v1/status.
type StatusInfo struct {
	PeerID   string  `json:"peer_id"`
	Network  string  `json:"network"`
	Version  string  `json:"version"`
	Peers    int     `json:"peers"`
	DHTPeers int     `json:"dht_peers"`
	UptimeS  float64 `json:"uptime_s"`
	// GPUs counts the GPUs per health state; GPUSource says where they come
	// from ("nvml", "mock:<name>" or "none" for a CPU-only node).
	GPUs      map[string]int `json:"gpus"`
	GPUSource string         `json:"gpu_source"`
	GPUReason string         `json:"gpu_reason,omitempty"`
	// Chain is "ok", or why the chain cannot be read now (every chain.rpc
	// endpoint failed), with ChainDownS how long it has been so.
	Chain      string  `json:"chain"`
	ChainDownS float64 `json:"chain_down_s,omitempty"`
	// Proof is this node's own proof-of-GPU standing as a provider, from
	// every verdict verifiers sent it: "verified by N, last at T",
	// "failed: why" (a challenge it failed, refused or timed out), or
	// "unverified".
	Proof string `json:"proof"`
}

// ConnectRequest is POST /v1/peers/connect.
type ConnectRequest struct {
	Addr string `json:"addr"`
}

// ShutdownResult is POST /v1/shutdown's answer.
type ShutdownResult struct {
	PeerID string `json:"peer_id"`
}

// ErrorBody is the body of every error response.
type ErrorBody struct {
	Error string `json:"error"`
}
