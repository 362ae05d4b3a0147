package node

import (
	"context"
	"math/big"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/aixblock/aixblock/chain"
	"github.com/aixblock/aixblock/gpu"
	"github.com/aixblock/aixblock/jobs"
	"github.com/ethereum/go-ethereum/common"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// registerMetrics adds the daemon's own metrics next to libp2p's, which
// p2p registers on the same registry. What an operator watches:
//
//	aixblock_jobs{where,state}             jobs by state: where="local" runs here
//	                                       (this node's own and the market's),
//	                                       "remote" this node's jobs on providers
//	aixblock_gpus{health}                  GPUs by health (healthy, degraded, unhealthy)
//	aixblock_gpus_allocated                GPUs held by a job that has not ended
//	aixblock_deals_active{side}            deals whose job has not ended: side="provider"
//	                                       (this node runs it) or "requester" (pays it)
//	aixblock_vouchers{direction}           channels with a voucher kept: "signed"
//	                                       (this node pays) or "received" (is paid)
//	aixblock_vouchers_amount{direction,token}  their cumulative amounts, in token units
//	aixblock_redeemed_amount{token}        redeemed on chain into this wallet, token units
//	aixblock_deposited_amount{token}       deposited by this wallet into its channels
//	aixblock_bitswap_bytes_total{direction}   block bytes received/sent by bitswap
//	aixblock_bitswap_blocks_total{direction}  blocks received/sent by bitswap
//	aixblock_bids_total                    offers this provider bid on
//	aixblock_bids_refused_total{reason}    offers it refused, by NoBid code (price,
//	                                       gpus, cpu, memory, disk, image, token,
//	                                       duration, limit, declined, chain, error)
//	aixblock_dashboard_sessions            live dashboard sessions
//
// Chain figures are read at most every chainMetricsEvery, so a scrape
// never waits on the chain for long.
func (n *Node) registerMetrics() {
	reg := n.metrics
	reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "aixblock_peers", Help: "Connected libp2p peers.",
		}, func() float64 { return float64(len(n.p2p.Host.Network().Peers())) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "aixblock_dht_peers", Help: "Peers in the DHT routing table.",
		}, func() float64 { return float64(n.p2p.DHT.RoutingTable().Size()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "aixblock_chain_up", Help: "1 while the chain answers, 0 while every chain.rpc endpoint fails.",
		}, func() float64 {
			if s, _ := n.chainHealth(); s != "ok" {
				return 0
			}
			return 1
		}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "aixblock_uptime_seconds", Help: "Seconds since the daemon started.",
		}, func() float64 { return time.Since(n.started).Seconds() }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "aixblock_info", Help: "Always 1; labels say what runs.",
			ConstLabels: prometheus.Labels{"version": Version, "network": n.p2p.Network(), "peer_id": n.p2p.Host.ID().String()},
		}, func() float64 { return 1 }),
	)
	reg.MustRegister(&nodeCollector{n: n})
	n.apiRequests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "aixblock_api_requests_total", Help: "Local API requests by route and status code.",
	}, []string{"route", "code"})
	reg.MustRegister(n.apiRequests)
}

type statusRecorder struct {
	http.ResponseWriter
	code int
}

func (s *statusRecorder) WriteHeader(code int) {
	s.code = code
	s.ResponseWriter.WriteHeader(code)
}

// Unwrap lets http.ResponseController reach Flush for streaming routes.
func (s *statusRecorder) Unwrap() http.ResponseWriter { return s.ResponseWriter }

func (n *Node) countRequests(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec := &statusRecorder{ResponseWriter: w, code: http.StatusOK}
		next.ServeHTTP(rec, r)
		n.apiRequests.WithLabelValues(routeLabel(r.URL.Path), strconv.Itoa(rec.code)).Inc()
	})
}

// chainMetricsEvery bounds how often a scrape reads the chain.
const chainMetricsEvery = 30 * time.Second

var (
	descJobs         = prometheus.NewDesc("aixblock_jobs", "Jobs by state; where=local: containers on this node, remote: this node's jobs on providers.", []string{"where", "state"}, nil)
	descGPUs         = prometheus.NewDesc("aixblock_gpus", "GPUs by health.", []string{"health"}, nil)
	descGPUsAlloc    = prometheus.NewDesc("aixblock_gpus_allocated", "GPUs held by a job that has not ended.", nil, nil)
	descDeals        = prometheus.NewDesc("aixblock_deals_active", "Deals whose job has not ended, by this node's side of them.", []string{"side"}, nil)
	descVouchers     = prometheus.NewDesc("aixblock_vouchers", "Channels with a voucher kept: signed (this node pays) or received (it is paid).", []string{"direction"}, nil)
	descVouchAmount  = prometheus.NewDesc("aixblock_vouchers_amount", "Cumulative amount of the kept vouchers, in token units.", []string{"direction", "token"}, nil)
	descRedeemed     = prometheus.NewDesc("aixblock_redeemed_amount", "Redeemed on chain into this wallet's channels, in token units.", []string{"token"}, nil)
	descDeposited    = prometheus.NewDesc("aixblock_deposited_amount", "Deposited by this wallet into its channels, in token units.", []string{"token"}, nil)
	descBitswapBytes = prometheus.NewDesc("aixblock_bitswap_bytes_total", "Block bytes moved by bitswap.", []string{"direction"}, nil)
	descBids         = prometheus.NewDesc("aixblock_bids_total", "Offers this provider bid on.", nil, nil)
	descBidsRefused  = prometheus.NewDesc("aixblock_bids_refused_total", "Offers this provider refused, by reason (the NoBid code).", []string{"reason"}, nil)
	descBitswapBlks  = prometheus.NewDesc("aixblock_bitswap_blocks_total", "Blocks moved by bitswap.", []string{"direction"}, nil)
)

// nodeCollector reads the services' state at scrape time.
type nodeCollector struct {
	n *Node

	mu       sync.Mutex
	chainAt  time.Time
	chainOut []prometheus.Metric
	tokens   map[common.Address]tokenMeta
}

type tokenMeta struct {
	symbol   string
	decimals uint8
}

func (c *nodeCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descJobs, descGPUs, descGPUsAlloc, descDeals, descVouchers, descVouchAmount,
		descRedeemed, descDeposited, descBitswapBytes, descBitswapBlks, descBids, descBidsRefused} {
		ch <- d
	}
}

func (c *nodeCollector) Collect(ch chan<- prometheus.Metric) {
	n := c.n
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}

	// Jobs and GPUs.
	local := map[string]float64{}
	live := map[string]bool{} // local jobs that have not ended
	alloc := map[string]bool{}
	if n.jobs != nil {
		for _, j := range n.jobs.List() {
			local[string(j.State)]++
			if !j.State.Terminal() {
				live[j.ID] = true
				for _, u := range j.GPUs {
					alloc[u] = true
				}
			}
		}
	}
	remote := map[string]float64{}
	provDeals, reqDeals := 0, 0
	if n.lease != nil {
		var by map[jobs.State]int
		by, reqDeals, provDeals = n.lease.Stats()
		for st, c := range by {
			remote[string(st)] = float64(c)
		}
	}
	for _, s := range []jobs.State{jobs.Running, jobs.Completed, jobs.Failed, jobs.Canceled} {
		local[string(s)] += 0 // the usual states always show, at zero too
		remote[string(s)] += 0
	}
	for s, v := range local {
		gauge(descJobs, v, "local", s)
	}
	for s, v := range remote {
		gauge(descJobs, v, "remote", s)
	}
	gauge(descDeals, float64(provDeals), "provider")
	gauge(descDeals, float64(reqDeals), "requester")
	health := map[string]float64{string(gpu.Healthy): 0, string(gpu.Degraded): 0, string(gpu.Unhealthy): 0}
	if n.gpus != nil {
		for _, g := range n.gpus.Inventory().GPUs {
			health[string(g.Health)]++
		}
	}
	for h, v := range health {
		gauge(descGPUs, v, h)
	}
	gauge(descGPUsAlloc, float64(len(alloc)))

	// Bids.
	if n.market != nil {
		bids, refused := n.market.BidCounts()
		ch <- prometheus.MustNewConstMetric(descBids, prometheus.CounterValue, float64(bids))
		for code, v := range refused {
			ch <- prometheus.MustNewConstMetric(descBidsRefused, prometheus.CounterValue, float64(v), code)
		}
	}

	// Bitswap.
	if n.content != nil {
		if st, err := n.content.BitswapStat(); err == nil {
			counter := func(d *prometheus.Desc, v uint64, dir string) {
				ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), dir)
			}
			counter(descBitswapBytes, st.DataReceived, "received")
			counter(descBitswapBytes, st.DataSent, "sent")
			counter(descBitswapBlks, st.BlocksReceived, "received")
			counter(descBitswapBlks, st.BlocksSent, "sent")
		}
	}

	// Money: vouchers kept here, channels on chain (cached).
	if n.vouchers != nil && n.chain != nil {
		for _, m := range c.chainMetrics() {
			ch <- m
		}
	}
}

// chainMetrics are the money figures, read again once they are older than
// chainMetricsEvery; a chain that does not answer leaves them out.
func (c *nodeCollector) chainMetrics() []prometheus.Metric {
	c.mu.Lock()
	defer c.mu.Unlock()
	if time.Since(c.chainAt) < chainMetricsEvery && c.chainOut != nil {
		return c.chainOut
	}
	n := c.n
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if c.tokens == nil {
		c.tokens = map[common.Address]tokenMeta{}
	}
	meta := func(t common.Address) (tokenMeta, bool) {
		if m, ok := c.tokens[t]; ok {
			return m, true
		}
		sym, dec, err := n.chain.TokenInfo(ctx, t)
		if err != nil {
			return tokenMeta{}, false
		}
		c.tokens[t] = tokenMeta{sym, dec}
		return c.tokens[t], true
	}
	var out []prometheus.Metric
	add := func(d *prometheus.Desc, sums map[common.Address]*big.Int, labels ...string) {
		for t, v := range sums {
			m, ok := meta(t)
			if !ok {
				continue
			}
			out = append(out, prometheus.MustNewConstMetric(d, prometheus.GaugeValue, tokenUnits(v, m.decimals), append(labels, m.symbol)...))
		}
	}
	for _, dir := range []struct {
		name string
		vs   []*chain.Voucher
	}{{"signed", n.vouchers.Signed()}, {"received", n.vouchers.Received()}} {
		sums := map[common.Address]*big.Int{}
		for _, v := range dir.vs {
			if sums[v.Token] == nil {
				sums[v.Token] = new(big.Int)
			}
			sums[v.Token].Add(sums[v.Token], v.CumulativeAmount.Big())
		}
		out = append(out, prometheus.MustNewConstMetric(descVouchers, prometheus.GaugeValue, float64(len(dir.vs)), dir.name))
		add(descVouchAmount, sums, dir.name)
	}
	chs, err := n.chain.Channels(ctx)
	if err == nil {
		me := n.wallet.Address()
		redeemed, deposited := map[common.Address]*big.Int{}, map[common.Address]*big.Int{}
		for _, ch := range chs {
			into, v := redeemed, ch.Redeemed
			if ch.Payer == me {
				into, v = deposited, ch.Deposited
			}
			if into[ch.Token] == nil {
				into[ch.Token] = new(big.Int)
			}
			if v != nil {
				into[ch.Token].Add(into[ch.Token], v.Big())
			}
		}
		add(descRedeemed, redeemed)
		add(descDeposited, deposited)
	}
	c.chainAt, c.chainOut = time.Now(), out
	return out
}

// tokenUnits is v base units as a float of whole units (Prometheus values
// are floats; the exact figures are in the wallet's API).
func tokenUnits(v *big.Int, decimals uint8) float64 {
	f := new(big.Float).SetInt(v)
	f.Quo(f, new(big.Float).SetInt(new(big.Int).Exp(big.NewInt(10), big.NewInt(int64(decimals)), nil)))
	x, _ := f.Float64()
	return x
}
