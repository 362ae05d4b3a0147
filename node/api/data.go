package api

// AddRequest is POST /v1/data/add: the daemon reads Path itself (the API
// is local to this machine).
type AddRequest struct {
	Path       string `json:"path"`
	Pin        bool   `json:"pin,omitempty"`
	CIDVersion *int   `json:"cid_version,omitempty"`
	RawLeaves  *bool  `json:"raw_leaves,omitempty"`
	Chunker    string `json:"chunker,omitempty"`
	Hidden     bool   `json:"hidden,omitempty"`
}

// GetRequest is POST /v1/data/get: the daemon writes Output itself.
type GetRequest struct {
	CID    string `json:"cid"`
	Output string `json:"output"`
}

// CIDRequest names one CID.
type CIDRequest struct {
	CID string `json:"cid"`
}

// DataEvent is one line of the NDJSON stream that add and get answer with:
// progress lines, then one with CID (add) or Done (get), or one with Error.
type DataEvent struct {
	Bytes   int64 `json:"bytes,omitempty"`
	Blocks  int   `json:"blocks,omitempty"`
	Fetched int   `json:"fetched,omitempty"`
	// Total (get) is the DAG's declared size, comparable with Bytes;
	// Peers is how many peers sent blocks so far.
	Total int64 `json:"total,omitempty"`
	Peers int   `json:"peers,omitempty"`
	// From (get) names the peers that sent blocks, in the order their
	// first block came; MiBs is the rate so far.
	From  []string `json:"from,omitempty"`
	MiBs  float64  `json:"mib_s,omitempty"`
	CID   string   `json:"cid,omitempty"`
	Done  bool     `json:"done,omitempty"`
	Error string   `json:"error,omitempty"`
}
