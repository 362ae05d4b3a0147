package node

import (
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// registerMetrics adds the daemon's own metrics next to libp2p's, which
// p2p registers on the same registry.
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
			Name: "aixblock_uptime_seconds", Help: "Seconds since the daemon started.",
		}, func() float64 { return time.Since(n.started).Seconds() }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "aixblock_info", Help: "Always 1; labels say what runs.",
			ConstLabels: prometheus.Labels{"version": Version, "network": n.p2p.Network(), "peer_id": n.p2p.Host.ID().String()},
		}, func() float64 { return 1 }),
	)
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
