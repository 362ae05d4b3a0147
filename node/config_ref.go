package node

import (
	"reflect"
	"sort"
	"strings"
)

// ConfigKey documents one key of config.json for `aixblock config show
// --defaults`. TestConfigReferenceCoversEveryKey fails when a field of
// Config has no entry here (or an entry names a key that is gone), so the
// reference cannot drift from the code.
type ConfigKey struct {
	Key     string `json:"key"`
	Default string `json:"default"`
	Meaning string `json:"meaning"`
}

// ConfigReference is every key of config.json, its default and its meaning.
func ConfigReference() []ConfigKey {
	d := DefaultConfig("")
	return []ConfigKey{
		{"network", d.Network, "network name: the DHT prefix, topics and stream protocols live under /aixblock/NAME/; nodes of two networks never exchange a record"},
		{"listen", strings.Join(d.Listen, " "), "libp2p listen multiaddrs (TCP and QUIC); a port in use fails the start"},
		{"announce", "(the listen addresses)", "replaces the addresses the node advertises"},
		{"api", d.API, "HOST:PORT of the local HTTP API and dashboard; port 0 picks a free one; the default falls back to a free port when another daemon holds it"},
		{"bootstrap", "(none)", "multiaddrs ending in /p2p/PEER-ID to join through"},
		{"mdns", "true", "LAN discovery"},
		{"nat", "true", "NAT port mapping, AutoNAT, the relay client and hole punching"},
		{"reachability", "(AutoNAT decides)", "public or private: skip AutoNAT's verdict (a node known to be behind NAT looks for relays at once)"},
		{"relays", "[] (candidates from the DHT)", "multiaddrs with /p2p/ID of relays to reserve a slot on when behind NAT"},
		{"job_relay", "false", "relay the circuits of the job networks this node can check (deals signed and funded), each peer within a byte budget and the deals' duration, so ranks whose providers cannot reach each other directly can talk (a public node with bandwidth to give)"},
		{"conn_low", "64", "connection manager low watermark (0: the default)"},
		{"conn_high", "192", "connection manager high watermark (0: the default)"},
		{"gateway", d.Gateway, `HOST:PORT of the trustless IPFS gateway; port 0 picks a free one; "off" disables it; the default falls back to a free port when taken`},
		{"gpu.mock", "(real NVML)", "a go-nvml mock server instead of NVML: dgxa100, dgxh100, dgxh200, dgxb200"},
		{"gpu.poll_interval", "10s", "how often health counters are read"},
		{"gpu.quiet_window", "5m", "how long a degraded GPU must stay quiet to be healthy again"},
		{"gpu.fatal_xids", "48 62 63 64 74 79 92 94 95 119 120 136 140 143 155 156 158", "XIDs that make a GPU unhealthy (replaces the list)"},
		{"gpu.app_xids", "13 31 43 45 68", "XIDs that blame the job, not the card (replaces the list)"},
		{"content.find_timeout", "30s", "how long a fetch looks for providers of a CID"},
		{"content.first_block_timeout", "60s", "how long a fetch waits for its first block"},
		{"content.stall_timeout", "60s", "how long a fetch may go without progress"},
		{"content.max_dag_mib", "65536 (64 GiB)", "largest DAG a fetch writes, counted in the bytes written (repeated links count each time)"},
		{"content.max_depth", "64", "deepest DAG a fetch follows"},
		{"content.result_ttl", "168h (7 days)", `how long a job's result stays pinned unless pinned for good (data pin add); "never" keeps results forever`},
		{"content.direct_io", "false", "write block files and the files data get writes with O_DIRECT, past the page cache: faster only where the disk outruns the kernel's page handling"},
		{"chain.rpc", "(an embedded dev chain in REPO/devchain)", "EVM JSON-RPC URL: http, https, ws or wss; several of one chain, comma-separated, fail over in turn"},
		{"chain.outage_grace", "10m", "how long a provider runs a job on vouchers it cannot check while the chain is unreachable"},
		{"chain.escrow", "(deployed on the dev chain)", "escrow contract address; required with chain.rpc"},
		{"chain.token", "(the dev chain's test token)", `ERC-20 token address, or "native"; required with chain.rpc`},
		{"chain.dev", "false", "marks chain.rpc as a development chain, where the wallet may have an empty passphrase"},
		{"chain.confirmations", "1", "blocks before a transaction counts"},
		{"chain.bump_after", "30s", "how long a transaction may wait unmined before it is sent again with 12.5% higher fees"},
		{"chain.log_range", "2000", "most blocks one eth_getLogs request spans (hosted RPCs cap it); a range the RPC refuses is halved until it passes"},
		{"market.prices", "(none: this node does not provide)", `prices per GPU-hour (per core-hour for "cpu") in whole token units, by class ("*" for any), then by token ("default", "native" or an address)`},
		{"market.pricing_command", "(none)", "a program that prices each offer: reads it as JSON on stdin, prints a price in base units"},
		{"market.accepted_images", "(any)", "glob patterns of the images this node runs"},
		{"market.max_duration", "24h", "longest job this node provides"},
		{"market.bid_window", "1s", "how long this node, as a requester, collects bids"},
		{"market.reserve_for", "10s", "how long this node, as a provider, holds GPUs for a bid not yet awarded, whatever the offer asks"},
		{"market.max_reservations", "4", "how many unawarded bids one requester (peer ID, and wallet under any peer ID) may hold on this node at once"},
		{"market.reserve_budget", "16", "how many unawarded bids this node holds at once, all requesters together"},
		{"market.require_disk_mib", "false", "refuse market jobs that leave resources.disk_mib out (they would have no disk bound here)"},
		{"market.default_disk_mib", "0 (none)", "disk bound of a market job that leaves resources.disk_mib out; needs a daemon running as root with mkfs.ext4 and loop devices"},
		{"market.allow_registries", "[] (none)", "image registries (host or host:port) the engine may pull from although they resolve to this host's own or private network"},
		{"market.pause_grace", "2m", `how long a market job stays paused, its GPUs held, once its vouchers stop, before it is stopped; "off" stops it at once`},
		{"market.max_prepare", "5m", "how long a market job may fetch its image and inputs here, its GPUs held and not yet paid for"},
		{"market.prepay", "(ten voucher intervals, at least 1m)", "how far a requester's vouchers may run ahead of a running job (they grow with its run up to this), so it survives the requester's restart or sleep"},
		{"market.voucher_interval", "30s", "how often a requester pays for running jobs; a provider stops a job after three missed"},
		{"market.redeem_every", "1h", `how often a provider redeems its vouchers, all channels in one transaction; "off" leaves it to wallet redeem`},
		{"market.proof_image", "aixblock/challenge:cpu", "the image this provider answers proof-of-GPU challenges in: the CPU workload (make job-image builds it), or the NVIDIA one a provider of real GPUs builds from gpu/challenge/nvidia"},
		{"market.max_holdback", "50%", `the largest share of its pay this provider lets a requester hold back until the job's result verifies (verify.holdback); "0%" bids on no such offer`},
		{"market.verify_sample", "(none)", "spot-check this share of this node's market batch jobs on one node whose spec says nothing of verify, e.g. 5% (a spec's verify: {sample: 5%})"},
		{"market.verify_holdback", "(none)", "with verify_sample: the share of those jobs' pay held back until their result verifies, e.g. 20%"},
		{"market.auto_verify", "true", "challenge the providers this node finds, once and then at random times (about daily), and rank bids by the verdicts"},
		{"market.redeem_above", "(any amount)", "skip a timed redeem while less than this many base units are owed"},
		{"market.host_network_for", "[]", "requesters (peer IDs) whose distributed jobs may ask for this host's network (distributed.network: host; the job gets the host's network)"},
		{"market.ports", "29500-29999", "ports distributed ranks on the host's network listen on"},
	}
}

// configKeys lists the JSON keys of Config, nested sections as
// "section.key", for the drift test.
func configKeys() []string {
	var out []string
	var walk func(t reflect.Type, prefix string)
	walk = func(t reflect.Type, prefix string) {
		for i := 0; i < t.NumField(); i++ {
			f := t.Field(i)
			name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
			if name == "" || name == "-" {
				continue
			}
			if f.Type.Kind() == reflect.Struct {
				walk(f.Type, prefix+name+".")
				continue
			}
			out = append(out, prefix+name)
		}
	}
	walk(reflect.TypeOf(Config{}), "")
	sort.Strings(out)
	return out
}
